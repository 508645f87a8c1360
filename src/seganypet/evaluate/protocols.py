"""The evaluation protocols: their names, what each simulated user does, the first-click rules.

This module is the registry ``seganypet evaluate --protocol`` takes its choices from; it imports
nothing heavy. The users themselves are in :mod:`seganypet.evaluate.users`.

A simulated user looks at the ground truth and at the current prediction, as a person would, and
answers with prompts only: the :class:`~seganypet.session.Session` receives nothing but the image
and these prompts, so it places its crops from the user's clicks, never from the ground truth.

Protocols (step 1 is the first interaction; ``--clicks N`` runs steps 1..N):

- ``clicks``: step 1 clicks the object at the voxel ``--first-click`` names
  (:data:`FIRST_CLICKS`): ``interior``, the most interior voxel (the maximum of its Euclidean
  distance transform, in mm); ``hottest``, its SUVmax voxel, where a reader clicks; ``random``, a
  uniformly random voxel of the object drawn from ``--seed``. Every later step clicks the EDT
  centre of the largest 26-connected error region, positive where the prediction misses the
  object, negative where it leaks (:func:`seganypet.prompts.next_click_at_error_centre`).
- ``clicks-random``: the SAM-Med3D user: every click, the first included, is a uniformly random
  voxel of the error (at step 1 the error is the whole object), drawn from ``--seed``.
- ``box-clicks``: step 1 draws the object's tight 3D bounding box (an axis one voxel thick is
  widened to the voxel's faces, ±0.5, as the session needs a box of positive extent), then clicks
  as in ``clicks``.
- ``scribbles``: step 1 draws a positive scribble through the object: a straight stroke on the
  axial slice (the third array axis) through its most interior voxel, along the long axis of
  its cross-section there, a voxel short of its border at each end. Every later step draws such
  a stroke through the largest 26-connected error region, positive or negative
  (:func:`seganypet.prompts.next_scribble_at_error`); a cross-section too small for a line gets
  a click instead.
- ``autopet``: the autoPET IV interactive protocol. The object is the whole case's tumour burden
  (every voxel of its lesion labels, all components together), scored image-wide as autoPET does.
  Clicks are simulated once from the ground truth before any prediction; step k adds the k-th
  tumour (positive) click and the k-th background (negative) click. The rule
  (:func:`autopet_clicks`, after the challenge's published click simulation):

  * tumour clicks: up to ``--clicks`` 26-connected lesion components are drawn in random order,
    and each gets a click at its EDT centre (voxel units, the first maximum in array order);
    while clicks remain, the drawn components take turns giving a click at a random voxel of
    their border (the voxels of least EDT);
  * background clicks: the same rule on the *hot non-tumour components*: 26-connected regions of
    the voxels outside every lesion whose SUV exceeds the 99.75th percentile of all non-lesion
    voxels (the bladder, kidneys, brain, bowel a model would leak into);
  * the draws come from ``--seed`` mixed with the case name, so the click sets are deterministic.

The classical baselines of a run are seeded at the protocol's first click: the ``--first-click``
voxel for ``clicks`` and for ``box-clicks`` (whose first prompt is a box), the first random click
for ``clicks-random``, the first scribble's most interior voxel for ``scribbles`` and the first
tumour click for ``autopet``.
"""

from __future__ import annotations

from dataclasses import dataclass

from seganypet.errors import InputError

AUTOPET_HOT_PERCENTILE = 99.75
#: The name of the autopet protocol's one object per case: its whole tumour burden.
AUTOPET_OBJECT = "lesions"


@dataclass(frozen=True)
class Protocol:
    """One protocol: its name, one line for ``--help``, the rule a report states, and whether
    ``--first-click`` applies."""

    name: str
    summary: str
    rule: str
    takes_first_click: bool = False


_ERROR_SIGN = "positive on missed foreground, negative on leakage"

PROTOCOLS: dict[str, Protocol] = {
    protocol.name: protocol
    for protocol in (
        Protocol(
            "clicks",
            "the first click, then a click at the largest error's centre",
            "step 1: a positive click at the first-click voxel; then a click at the EDT centre of "
            f"the largest 26-connected error region, {_ERROR_SIGN}",
            takes_first_click=True,
        ),
        Protocol(
            "clicks-random",
            "every click at a random voxel of the error (SAM-Med3D)",
            "every click (the first included) at a uniformly random voxel of the error, "
            f"{_ERROR_SIGN} (SAM-Med3D); random stream from --seed, the case and the object",
        ),
        Protocol(
            "box-clicks",
            "the object's bounding box, then clicks as in clicks",
            "step 1: the object's tight 3D bounding box; then clicks as in 'clicks' (the "
            "first-click voxel seeds the baselines)",
            takes_first_click=True,
        ),
        Protocol(
            "scribbles",
            "a scribble through the object, then through the largest error",
            "step 1: a positive stroke along the core of the object's cross-section on the axial "
            "slice (third array axis) through its most interior voxel; then such a stroke "
            f"through the largest 26-connected error region, {_ERROR_SIGN}; a cross-section too "
            "thin for a line gets a click",
        ),
        Protocol(
            "autopet",
            "autoPET IV: pre-simulated tumour and background click pairs",
            "autoPET IV: the case's whole tumour burden is one object; step k adds the k-th "
            "tumour click (EDT centres of up to N random lesion components, then their border "
            "voxels in turn) and the k-th background click (the same rule on the components "
            f"outside the lesions hotter than the {AUTOPET_HOT_PERCENTILE:g}th percentile of "
            "non-lesion SUV); draws from --seed and the case",
        ),
    )
}
#: Where ``--first-click`` clicks an object first, and the rule a report states.
FIRST_CLICKS: dict[str, str] = {
    "interior": "the object's most interior voxel (EDT maximum, mm)",
    "hottest": "the object's hottest voxel (SUVmax), where a reader clicks",
    "random": "a uniformly random voxel of the object (random stream from --seed, the case and "
    "the object)",
}
#: The protocols whose first click ``--first-click`` chooses (the others define their own).
FIRST_CLICK_PROTOCOLS = tuple(name for name, p in PROTOCOLS.items() if p.takes_first_click)


def check_protocol(protocol: str) -> Protocol:
    """The registered protocol of that name, or one line saying which exist."""
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise InputError(
            f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}"
        ) from None


def check_first_click(first_click: str, protocol: str) -> None:
    """Refuse an unknown protocol or ``--first-click`` rule, or a rule the protocol does not
    take."""
    takes_first_click = check_protocol(protocol).takes_first_click
    if first_click not in FIRST_CLICKS:
        raise InputError(
            f"unknown first click {first_click!r}; choose one of {', '.join(FIRST_CLICKS)}"
        )
    if first_click != "interior" and not takes_first_click:
        raise InputError(
            f"--first-click {first_click} applies to the protocols "
            f"{' and '.join(FIRST_CLICK_PROTOCOLS)}; {protocol} places its own first click"
        )
