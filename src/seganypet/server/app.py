"""The FastAPI application behind ``seganypet serve``.

One :class:`~seganypet.session.Session` per open study, shaped like nnInteractive's server: open a
study (a file under the data folder, or an upload), add points and boxes in voxel indices of the
input array, undo, reset, start and select named objects, read the mask (NIfTI or run-length JSON),
its SUV statistics, and save it (NIfTI label map, or DICOM SEG for a DICOM input).

With a DICOMweb server (``dicomweb``), its PET series join the study list as
``dicomweb:<study UID>/<series UID>``: opening one fetches it (WADO-RS) into the work folder, and
saving its DICOM SEG also stores the SEG on the server (STOW-RS).

Safety: every request needs the token (``Authorization: Bearer T`` or ``?token=T``); studies come
only from under the data folder; uploads are capped and must be NIfTI or a zipped DICOM series.
No lost work: every interaction goes to the study's :class:`~seganypet.server.journal.Journal`
(fsynced) before it is applied, and opening the study again replays it.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import logging
import os
import re
import secrets
import shutil
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import nibabel as nib
import numpy as np
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from seganypet.atomic import json_default
from seganypet.errors import InputError
from seganypet.prompts import Prompt
from seganypet.server.registry import (
    DEFAULT_MAX_OPEN,
    StudyRegistry,
    UnknownStudy,
    extent,
    label_map_rle,
    session_id_of,
)
from seganypet.server.schemas import (
    PROMPT_BODY,
    LiverIn,
    NewObject,
    OpenStudy,
    ReferenceIn,
    RenameObject,
    SavedFile,
    SaveIn,
    SessionInfo,
)
from seganypet.server.studies import (
    REFERENCE_SUFFIXES,
    UploadTooLarge,
    list_studies,
    receive_upload,
    refuse_mask,
    resolve_under,
    upload_suffix,
)

if TYPE_CHECKING:
    from seganypet.io.dicomweb import DicomwebSettings

log = logging.getLogger("seganypet.server")
DICOMWEB_PREFIX = "dicomweb:"

DEFAULT_MAX_UPLOAD_MB = 2048
STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {
    ".js": "text/javascript",
    ".html": "text/html",
    ".css": "text/css",
    ".json": "application/json",
}
#: The OpenAPI request body of an upload: the file's bytes.
BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
SAVED_NAME = re.compile(r"^[A-Za-z0-9._-]+\.(nii\.gz|dcm)$")


def _nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=1)


# ---------------------------------------------------------------------------- the app
def default_work_dir(data_root: Path) -> Path:
    """Per-data-folder state under ``$XDG_STATE_HOME/seganypet/serve`` (``~/.local/state``)."""
    state_home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(data_root).encode()).hexdigest()[:16]
    return state_home / "seganypet" / "serve" / f"{data_root.name}-{digest}"


def create_app(
    data_dir: str | os.PathLike,
    model: Any,
    token: str,
    *,
    work_dir: str | os.PathLike | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1_000_000,
    max_open_studies: int = DEFAULT_MAX_OPEN,
    dicomweb: DicomwebSettings | None = None,
) -> FastAPI:
    """The application serving studies under ``data_dir`` with ``model``.

    ``model`` is a :class:`~seganypet.model.network.PromptableNetwork` or a checkpoint path for
    :func:`~seganypet.model.load_model`. ``token`` is required on every request. Journals,
    uploads and saved masks go to ``work_dir`` (default: :func:`default_work_dir`, outside the
    data folder, which may be read-only and is the user's, not ours). At most
    ``max_open_studies`` studies stay in memory; one let go of reopens from its journal.
    ``dicomweb`` adds that server's PET series to the study list (see the module's docstring).
    """
    if not token or len(token) < 8:
        raise InputError("the server needs a token of at least 8 characters")
    data_root = Path(data_dir).resolve()
    if not data_root.is_dir():
        raise InputError(f"{data_dir}: the data folder does not exist")
    work = Path(work_dir) if work_dir is not None else default_work_dir(data_root)
    work = work.resolve()
    (work / "journals").mkdir(parents=True, exist_ok=True)
    small_object_network = None
    if not hasattr(model, "decode"):
        from seganypet.model import load_model, load_small_object_model

        small_object_network = load_small_object_model(model)
        model = load_model(model)
    registry = StudyRegistry(
        model,
        work / "journals",
        small_object_network=small_object_network,
        max_open=max_open_studies,
    )
    expected = token.encode()
    pacs = None
    if dicomweb is not None:
        from seganypet.io.dicomweb import DicomwebServer

        pacs = DicomwebServer(dicomweb)
    fetching = threading.Lock()  # one series fetched at a time, never two into one folder

    app = FastAPI(
        title="seganypet serve",
        description=(
            "Interactive promptable segmentation of whole-body PET. Every request needs the "
            "token: `Authorization: Bearer <token>` or `?token=<token>`. Voxel coordinates are "
            "indices of the input image's array axes (for DICOM: column, row, slice)."
        ),
        docs_url=None,  # Swagger UI would load scripts from a CDN; the schema is at openapi_url
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.data_dir = data_root
    app.state.work_dir = work
    app.state.registry = registry
    app.state.dicomweb = pacs

    # ------------------------------------------------------------------ safety
    @app.middleware("http")
    async def require_token(request: Request, call_next):
        supplied = request.headers.get("authorization", "")
        if supplied.lower().startswith("bearer "):
            supplied = supplied[7:].strip()
        else:
            supplied = request.query_params.get("token", "")
        if not secrets.compare_digest(supplied.encode(), expected):
            return JSONResponse(
                {
                    "detail": "missing or wrong token: send 'Authorization: Bearer <token>' or "
                    "?token=<token> (printed when the server started)"
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_upload_bytes:
            return JSONResponse(
                {"detail": f"the request exceeds the limit of {max_upload_bytes / 1e6:.0f} MB"},
                status_code=413,
            )
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    upload_names: dict[str, str] = {}  # sha256 of an upload -> the name it was sent with
    private = re.compile(
        re.escape(str(work))
        + r"/uploads/([0-9a-f]{64})(?:/dicom/\d{6}_|/image\.(?:nii(?:\.gz)?|dcm))?"
        "|" + re.escape(str(work)) + "|" + re.escape(str(data_root)) + "/?"
    )

    def public(message: str) -> str:
        """The message with the server's own paths taken out: a study is named relative to the
        data folder, an upload by the name it was sent with (the member's name for a zip)."""

        def replace(match: re.Match) -> str:
            if match.group(1):
                name = upload_names.get(match.group(1), "the upload")
                return name + ("/" if match.group(0).endswith("_") else "")
            return "" if match.group(0).startswith(str(data_root)) else "the server's work folder"

        return private.sub(replace, message)

    @app.exception_handler(UploadTooLarge)
    async def too_large(request: Request, exc: UploadTooLarge):
        return JSONResponse({"detail": public(str(exc))}, status_code=413)

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError):
        status = getattr(exc, "status", 400)  # a DICOMweb server's unknown UID: 404
        return JSONResponse({"detail": public(str(exc))}, status_code=status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"detail": "the server failed on this request; its log has the details"},
            status_code=500,
        )

    @app.exception_handler(UnknownStudy)
    async def unknown_study(request: Request, exc: UnknownStudy):
        return JSONResponse(
            {"detail": f"no open session {exc.args[0]!r}; open the study first"}, status_code=404
        )

    # ------------------------------------------------------------------ endpoints
    @app.get("/api/health", tags=["server"])
    def health() -> dict[str, Any]:
        from seganypet import __version__

        return {"status": "ok", "version": __version__, "open_sessions": len(registry)}

    @app.get("/api/studies", tags=["studies"])
    def studies() -> list[dict[str, Any]]:
        """The PET images under the data folder (NIfTI files and DICOM folders), each with the
        masks beside it (NIfTI label maps, RTSTRUCTs, SEGs) as ``attachments``: a mask is not a
        study. With a DICOMweb server, then its PET series (``kind`` dicomweb, a ``label`` for
        people), found by QIDO-RS."""
        found = list_studies(data_root)
        if pacs is not None:
            found += [
                {"path": s.key, "kind": "dicomweb", "label": f"PACS: {s.label}", "attachments": []}
                for s in pacs.pet_series()
            ]
        return found

    def open_from_dicomweb(key: str) -> SessionInfo:
        from seganypet.io.dicomweb import parse_series_key

        if pacs is None:
            raise InputError(
                f"{key!r}: this server has no DICOMweb server; start it with --dicomweb URL"
            )
        study_uid, series_uid = parse_series_key(key)
        key = f"{DICOMWEB_PREFIX}{study_uid}/{series_uid}"
        folder = work / "dicomweb" / session_id_of(key)
        if not registry.is_open(key):
            series = pacs.find_pet_series(study_uid, series_uid)
            with fetching:
                pacs.fetch(series, folder)
        return registry.open(key, key, folder).info()

    @app.post("/api/sessions", tags=["studies"])
    def open_from_data(body: OpenStudy) -> SessionInfo:
        """Open a study under the data folder (or, ``dicomweb:<study UID>/<series UID>``, one
        fetched from the DICOMweb server); its journal, if any, is replayed."""
        if body.study.startswith(DICOMWEB_PREFIX):
            return open_from_dicomweb(body.study)
        path = resolve_under(data_root, body.study)
        relative = path.relative_to(data_root).as_posix()
        if path.is_relative_to(work):
            raise InputError(f"{body.study!r}: the server's work folder is not a study")
        refuse_mask(path, relative)
        return registry.open(f"data:{relative}", relative, path).info()

    @app.post(
        "/api/sessions/upload",
        tags=["studies"],
        openapi_extra=BINARY_BODY,
    )
    async def open_upload(
        request: Request,
        filename: str = Query(
            description="the file's name: *.nii, *.nii.gz or *.zip (DICOM series)"
        ),
    ) -> SessionInfo:
        """Upload a NIfTI image or a zipped DICOM series as the raw request body, and open it."""
        upload_suffix(filename)
        sha, path = await receive_upload(
            request.stream(), filename, work / "uploads", max_upload_bytes
        )
        name = Path(filename).name
        upload_names[sha] = name
        try:
            await run_in_threadpool(refuse_mask, path, name)
            study = await run_in_threadpool(registry.open, f"upload:{sha}", name, path)
        except Exception:
            if not registry.is_open(f"upload:{sha}"):
                shutil.rmtree(work / "uploads" / sha, ignore_errors=True)
            raise
        return await run_in_threadpool(study.info)

    @app.get("/api/sessions/{session_id}", tags=["session"])
    def session_info(session_id: str) -> SessionInfo:
        return registry.get(session_id).info()

    @app.get("/api/sessions/{session_id}/image", tags=["session"], response_class=Response)
    def image_nifti(session_id: str) -> Response:
        """The image in SUV as gzipped NIfTI (float32), for the viewer."""
        study = registry.get(session_id)
        with study.lock:
            if study.image_bytes is None:
                study.image_bytes = _nifti_bytes(study.image.array, study.image.affine)
            data = study.image_bytes
        return Response(
            data,
            media_type="application/gzip",
            headers={"Content-Disposition": 'attachment; filename="image.nii.gz"'},
        )

    @app.post("/api/sessions/{session_id}/prompts", tags=["prompts"])
    def add_prompt(
        session_id: str, body: Annotated[dict[str, Any], Body(**PROMPT_BODY)]
    ) -> SessionInfo:
        """A prompt for the current object (the first one of an object must be positive). The
        answer carries what the viewer needs: the label map where it changed, and the
        statistics."""
        prompt = Prompt.from_dict(body, "the prompt")
        return registry.get(session_id).apply({"op": "prompt", "prompt": prompt.to_dict()})

    @app.post("/api/sessions/{session_id}/undo", tags=["prompts"])
    def undo(session_id: str) -> SessionInfo:
        """Take back the last prompt, of whichever object."""
        return registry.get(session_id).apply({"op": "undo"})

    @app.post("/api/sessions/{session_id}/reset", tags=["prompts"])
    def reset(session_id: str) -> SessionInfo:
        """Clear every prompt of the current object (undo brings them back)."""
        return registry.get(session_id).apply({"op": "reset"})

    @app.post("/api/sessions/{session_id}/objects", tags=["objects"])
    def new_object(
        session_id: str, body: Annotated[NewObject | None, Body()] = None
    ) -> SessionInfo:
        """Start a new object; it becomes the current one."""
        name = body.name if body is not None else None
        return registry.get(session_id).apply({"op": "new_object", "name": name})

    @app.post("/api/sessions/{session_id}/objects/{index}/select", tags=["objects"])
    def select_object(session_id: str, index: int) -> SessionInfo:
        return registry.get(session_id).apply({"op": "select", "index": index})

    @app.patch("/api/sessions/{session_id}/objects/{index}", tags=["objects"])
    def rename_object(session_id: str, index: int, body: RenameObject) -> SessionInfo:
        return registry.get(session_id).apply({"op": "rename", "index": index, "name": body.name})

    @app.post("/api/sessions/{session_id}/reference", tags=["reference"])
    def set_reference(session_id: str, body: ReferenceIn) -> SessionInfo:
        """Load a reference segmentation from under the data folder (a NIfTI label map on the
        study's grid, an RTSTRUCT or a DICOM SEG, as listed in the study's ``attachments``):
        the viewer outlines it, and the answer gives the Dice of each of its labels with the
        current object."""
        path = resolve_under(data_root, body.path)
        if path.is_relative_to(work):
            raise InputError(f"{body.path!r}: the server's work folder holds no references")
        relative = path.relative_to(data_root).as_posix()
        return registry.get(session_id).update(
            {"op": "reference", "path": str(path), "source": relative}
        )

    @app.post(
        "/api/sessions/{session_id}/reference/upload",
        tags=["reference"],
        openapi_extra=BINARY_BODY,
    )
    async def upload_reference(
        session_id: str,
        request: Request,
        filename: str = Query(
            description="*.nii, *.nii.gz (label map), *.dcm (RTSTRUCT or SEG), or *.zip of one"
        ),
    ) -> SessionInfo:
        """Upload a reference segmentation as the raw request body, and load it."""
        study = registry.get(session_id)
        upload_suffix(filename, REFERENCE_SUFFIXES)
        sha, path = await receive_upload(
            request.stream(), filename, work / "uploads", max_upload_bytes, REFERENCE_SUFFIXES
        )
        name = Path(filename).name
        upload_names[sha] = name
        operation = {"op": "reference", "path": str(path), "source": name}
        return await run_in_threadpool(study.update, operation)

    @app.delete("/api/sessions/{session_id}/reference", tags=["reference"])
    def clear_reference(session_id: str) -> SessionInfo:
        return registry.get(session_id).update({"op": "reference", "path": None})

    @app.get("/api/sessions/{session_id}/reference", tags=["reference"])
    def reference_labels(session_id: str) -> JSONResponse:
        """The reference's label map, run-length coded in Fortran order, with its names."""
        study = registry.get(session_id)
        reference = study.reference
        if reference is None:
            raise HTTPException(404, "this session has no reference; load one first")
        payload = label_map_rle(reference.labels)
        payload["names"] = {str(k): v for k, v in reference.names.items()}
        payload["lo"], payload["hi"] = [0, 0, 0], [int(n) - 1 for n in reference.labels.shape]
        return JSONResponse(payload)

    @app.post("/api/sessions/{session_id}/liver", tags=["reference"])
    def liver(session_id: str, body: LiverIn) -> SessionInfo:
        """Place PERCIST's liver reference, a 3 cm sphere VOI, at a voxel: its SUL mean and SD
        and the threshold 1.5 x SULmean + 2 x SD (kept with the session)."""
        return registry.get(session_id).update({"op": "liver", "voxel": body.voxel})

    @app.post("/api/sessions/{session_id}/percist", tags=["reference"])
    def percist_baseline(session_id: str) -> SessionInfo:
        """Keep the liver reference's threshold as the session's PERCIST baseline: the answer
        then lists the lesions whose SULpeak reaches it."""
        study = registry.get(session_id)
        liver = study.liver
        if liver is None:
            raise InputError("place the liver reference first (a click on the liver)")
        return study.update(
            {
                "op": "percist",
                "threshold": liver.percist_threshold,
                "units": liver.units,
                "sul_per_unit": liver.sul_per_unit,
            }
        )

    @app.delete("/api/sessions/{session_id}/percist", tags=["reference"])
    def clear_percist(session_id: str) -> SessionInfo:
        return registry.get(session_id).update({"op": "percist", "threshold": None})

    @app.get("/api/sessions/{session_id}/mask", tags=["results"])
    def mask(
        session_id: str,
        format: Literal["nifti", "rle"] = "rle",
        object: int | None = Query(
            None, description="one object's index (default: all, as a label map)"
        ),
    ) -> Response:
        """The label map (object i has label i + 1; a later object wins where they overlap), or
        one object's mask (1 inside): gzipped NIfTI, or run-length JSON in Fortran order."""
        study = registry.get(session_id)
        with study.lock:
            if object is None:
                labels, names = study.label_map()
            else:
                if not 0 <= object < len(study.session.objects):
                    raise InputError(f"there is no object {object}")
                labels = study.session.object_mask(object).astype(np.uint8)
                names = {1: study.session.objects[object].name}
            image = study.image
        if format == "nifti":
            dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
            return Response(
                _nifti_bytes(labels.astype(dtype), image.affine),
                media_type="application/gzip",
                headers={"Content-Disposition": 'attachment; filename="mask.nii.gz"'},
            )
        payload = label_map_rle(labels)
        payload["names"] = {str(k): v for k, v in names.items()}
        payload["lo"], payload["hi"] = [0, 0, 0], [int(n) - 1 for n in labels.shape]
        whole = extent(labels > 0)
        payload["extent"] = None if whole is None else [whole[0], whole[1]]
        return JSONResponse(payload)

    @app.get("/api/sessions/{session_id}/stats", tags=["results"])
    def stats(session_id: str) -> Response:
        """SUVmax, SUVpeak, SUVmean, MTV and TLG per object (and per connected lesion)."""
        report = registry.get(session_id).stats()
        return Response(json.dumps(report, default=json_default), media_type="application/json")

    @app.post("/api/sessions/{session_id}/save", tags=["results"])
    def save(session_id: str, body: Annotated[SaveIn | None, Body()] = None) -> SavedFile:
        """Write the label map (NIfTI) or a DICOM SEG (DICOM inputs) to the work folder; the
        DICOM SEG of a study from the DICOMweb server is also stored there (STOW-RS)."""
        from seganypet.io.masks import save_mask

        study = registry.get(session_id)
        labels, names = study.label_map()
        image = study.image
        fmt = (body.format if body is not None else None) or (
            "dicom-seg" if image.dicom_headers is not None else "nifti"
        )
        if fmt == "dicom-seg" and image.dicom_headers is None:
            raise InputError("a DICOM SEG needs a DICOM input; save this study as nifti")
        if not names:
            raise InputError("there is nothing to save yet: no object has a mask")
        name = study.name.removesuffix(".gz").removesuffix(".nii").removesuffix(".zip")
        from_pacs = study.key.startswith(DICOMWEB_PREFIX)
        if from_pacs:
            name = "series_" + study.key.rsplit("/", 1)[-1]
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        filename = f"{stem.strip('._') or 'study'}_seg" + (
            ".dcm" if fmt == "dicom-seg" else ".nii.gz"
        )
        path = save_mask(labels, names, image, work / "outputs" / session_id / filename, format=fmt)
        stored = None
        if from_pacs and fmt == "dicom-seg" and pacs is not None:
            instance = pacs.store(path)
            stored = f"{pacs.url}: study {instance.study_uid}, SEG series {instance.series_uid}"
        return SavedFile(
            file=filename,
            format=fmt,
            path=str(path),
            download=f"/api/sessions/{session_id}/saved/{filename}",
            stored=stored,
        )

    @app.get(
        "/api/sessions/{session_id}/saved/{filename}", tags=["results"], response_class=FileResponse
    )
    def download(session_id: str, filename: str) -> FileResponse:
        """A file written by save."""
        registry.get(session_id)
        if not SAVED_NAME.match(filename):
            raise HTTPException(404, "no such saved file")
        path = work / "outputs" / session_id / filename
        if not path.is_file():
            raise HTTPException(404, "no such saved file; save first")
        media = "application/dicom" if filename.endswith(".dcm") else "application/gzip"
        return FileResponse(path, media_type=media, filename=filename)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        """The viewer page, with the token written into its script URLs."""
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        page = page.replace("__TOKEN_URL__", urllib.parse.quote(token, safe=""))
        page = page.replace("__TOKEN_HTML__", html.escape(token, quote=True))
        return HTMLResponse(page, headers={"Referrer-Policy": "no-referrer"})

    @app.get("/static/{path:path}", include_in_schema=False)
    def static(path: str) -> FileResponse:
        """The viewer's own files and the vendored NiiVue bundle (never anything else)."""
        try:
            file = resolve_under(STATIC_DIR, path)
        except InputError:
            raise HTTPException(404, "not found") from None
        if not file.is_file() or file.suffix not in STATIC_TYPES:
            raise HTTPException(404, "not found")
        return FileResponse(file, media_type=STATIC_TYPES[file.suffix])

    return app
