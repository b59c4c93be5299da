"""A persistent offscreen MuJoCo renderer for one model, closed cleanly at exit.

dm_control's ``physics.render`` builds its scene through extra Python layers; ``mujoco.Renderer``
on the same model, data and camera gives byte-identical images (tested) and is faster
(~5x on GPU machines per FACTS.md; only ~1.1x on CPU llvmpipe, where rasterising dominates).
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import platform
import weakref

import numpy as np

# MUJOCO_GL -> (the shared library its GL platform loads, the Debian/Ubuntu package with it)
GL_LIBRARIES = {"egl": ("EGL", "libegl1"), "osmesa": ("OSMesa", "libosmesa6"),
                "glx": ("GL", "libgl1"), "glfw": ("glfw", "libglfw3 (or pip install glfw)")}
GL_BACKENDS = ("egl", "osmesa", "glfw", "glx")


def loadable(name: str) -> bool:
    """Whether ``lib<name>.so`` loads, as PyOpenGL/glfw would look for it (sonames, then
    ``ctypes.util.find_library``)."""
    candidates = [f"lib{name}.so"] + [f"lib{name}.so.{v}" for v in range(12, -1, -1)]
    found = ctypes.util.find_library(name)
    for candidate in candidates + ([found] if found else []):
        try:
            ctypes.CDLL(candidate)
            return True
        except OSError:
            continue
    return False


def check_gl_backend(what: str = "this env") -> None:
    """A clear error, before any env is made, when ``MUJOCO_GL`` names a rendering backend whose
    library is not installed (MuJoCo itself fails later with e.g. ``'NoneType' object has no
    attribute 'glGetError'``). Linux only; other systems pick their own backend."""
    if platform.system() != "Linux":
        return
    backend = os.environ.get("MUJOCO_GL", "egl").lower().strip() or "glfw"
    if backend in ("enable", "enabled", "on", "true", "1"):
        backend = "glfw"
    if backend not in GL_BACKENDS:
        raise ValueError(f"MUJOCO_GL={backend!r}: {what} renders pixels with MuJoCo; valid "
                         f"backends: {list(GL_BACKENDS)} (egl for headless GPUs, osmesa for CPU)")
    if backend == "glfw":
        try:
            import glfw  # noqa: F401  (loads its library at import)
        except Exception as error:   # noqa: BLE001 -- ImportError, or glfw's own load errors
            raise ValueError(f"MUJOCO_GL=glfw but the glfw library does not load ({error}); "
                             f"install {GL_LIBRARIES['glfw'][1]}, or use MUJOCO_GL=egl "
                             f"(apt-get install libegl1) or MUJOCO_GL=osmesa "
                             f"(apt-get install libosmesa6)") from None
        return
    library, package = GL_LIBRARIES[backend]
    if not loadable(library):
        others = ", ".join(f"MUJOCO_GL={b} ({GL_LIBRARIES[b][1]})" for b in ("egl", "osmesa")
                           if b != backend)
        raise ValueError(f"MUJOCO_GL={backend} but lib{library}.so is not installed, so "
                         f"{what} cannot render; install it (apt-get install {package}) or "
                         f"choose another backend: {others}")

_LIVE: "weakref.WeakSet[PixelRenderer]" = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_all() -> None:
    for renderer in list(_LIVE):
        renderer.close()


class PixelRenderer:
    """Renders ``data`` from a fixed camera into uint8 ``[height, width, 3]`` images."""

    def __init__(self, model, height: int, width: int, camera: int | str):
        import mujoco

        self._renderer = mujoco.Renderer(model, height, width)
        if isinstance(camera, str):
            camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            if camera_id < 0:
                names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i)
                         for i in range(model.ncam)]
                raise ValueError(f"camera={camera!r} is not in the model; choose one of {names}")
            camera = camera_id
        if not -1 <= camera < model.ncam:
            raise ValueError(f"camera={camera} is out of range [-1, {model.ncam})")
        self.camera = camera
        _LIVE.add(self)
        global _ATEXIT_REGISTERED
        if not _ATEXIT_REGISTERED:
            # Registered after mujoco's EGL display exists, so (LIFO) it runs before the display
            # is terminated: renderers freed later print EGL errors at interpreter exit.
            atexit.register(_close_all)
            _ATEXIT_REGISTERED = True

    def render(self, data) -> np.ndarray:
        self._renderer.update_scene(data, camera=self.camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            try:
                # mujoco's Renderer.close frees its GL objects in whichever context is current,
                # i.e. another live renderer's (their object ids coincide): that broke every other
                # env in the process. Make its own context current first.
                gl_context = getattr(self._renderer, "_gl_context", None)
                if gl_context is not None:
                    gl_context.make_current()
                self._renderer.close()
            finally:
                self._renderer = None
                _LIVE.discard(self)

    def __del__(self) -> None:   # an env dropped without close() must not break the others
        try:
            self.close()
        except Exception:   # noqa: BLE001 -- at interpreter exit EGL may be gone already
            pass


class BackgroundMasker:
    """``[height, width]`` bool masks of the background (sky and floor) seen from ``camera``.

    MuJoCo's segmentation rendering gives each pixel the object it shows: nothing (id -1: the
    skybox) or a geom; pixels of plane geoms (DMC's floor or ground) count as background too.
    """

    def __init__(self, model, height: int, width: int, camera: int):
        import mujoco

        self._renderer = PixelRenderer(model, height, width, camera)
        self._renderer._renderer.enable_segmentation_rendering()
        self._plane = np.asarray(model.geom_type) == int(mujoco.mjtGeom.mjGEOM_PLANE)
        self._geom = int(mujoco.mjtObj.mjOBJ_GEOM)

    def mask(self, data) -> np.ndarray:
        seg = self._renderer.render(data)
        ids, types = seg[..., 0], seg[..., 1]
        is_geom = (types == self._geom) & (ids >= 0)
        plane = np.zeros(ids.shape, bool)
        plane[is_geom] = self._plane[ids[is_geom]]
        return (ids < 0) | plane

    def close(self) -> None:
        self._renderer.close()
