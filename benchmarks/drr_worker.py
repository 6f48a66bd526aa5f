"""Render DRRs with a third-party renderer on exactly our rays, timed (benchmark worker).

    python benchmarks/drr_worker.py --renderer {diffdrr,nanodrr,flashdrr} --ct CT.nii.gz \\
        --poses poses.npz --out result.npz [--threads 2] [--device cpu] [--batch N] \\
        [--hu-map {default,matched}]

Runs inside the renderer's own virtual environment (numpy, torch and the renderer only; no
xrayfactory import). `poses.npz` holds `P` (V, 3, 4) projection matrices and `rows`, `cols`.
World = the NIfTI's world frame (`nib.load(ct).affine`: voxel (i, j, k) -> RAS+ mm); P maps
[X, 1] to (col w, row w, w) with w > 0 in front of the source, pixel centres at integers,
(0, 0) the centre of the top-left pixel, images indexed [row, col]. The source is
s = -inv(M) p4 and pixel (col, row) looks along inv(M) [col, row, 1] (M = P[:, :3]); the
intrinsics come from an RQ split M = k K R (K upper triangular with positive diagonal,
K[2, 2] = 1; R orthonormal, det -1 allowed: rows of R are the image column axis, the image
row axis and the principal ray).

How each renderer gets our rays (geometry in float64 numpy, handed over as float32 tensors):

* diffdrr 0.6.1 (Siddon): `read(ct, orientation=None, center_volume=False)` keeps the NIfTI
  world frame (no re-centring). Its `Detector` (centred grid, x0/y0 offsets, reorient matrix)
  is bypassed: `DRR.render(density, source, target)` takes world-space ray end points, and
  we pass our source and, per pixel, target = s + reach * inv(M) [col, row, 1] (scaled to
  unit depth along the principal ray; reach = beyond the farthest CT corner). Siddon sums
  over every voxel-plane crossing of the whole line, so reach only has to clear the volume.
* nanodrr 0.1.7 (torch backend, `backend="torch"`): its native camera model, `render(subject,
  k_inv, rt_inv, sdd, ...)`. Its pixel (u, v) = (col + 0.5, row + 0.5), so k_inv =
  inv(K + 0.5 on the principal point); rt_inv = [[R^T, s], [0, 1]] (camera -> world, an
  affine it applies as given, so det R = -1 is fine); sdd = reach (it clips each ray to the
  volume and spreads `n_samples` = the longest volume dimension in voxels over the clipped
  part, so only the ray directions matter). Exact for any K (principal point, aspect).
* flashdrr 0.6.0 (CPU path: `VolumeRaycaster(..., return_tau=True)`, `triton=False`): its
  view matrix is camera -> world with columns [right, up, forward, position]; we pass
  [R0, -R1, R2, s]. Its `set_fov` ray table (centred principal point, rays through
  linspace(-1, 1) so the column and row pitches differ on non-square images) cannot express
  our K, so its per-pixel unit ray table `dirs_cam` (H, W, 3) is filled with
  normalize(K^-1 [col, row, 1] with the row component negated for the up axis): the same
  rays for any K. flashdrr maps voxel index i to grid coordinate 2 i / (S - 1) - 1 but
  samples with `align_corners=False`, i.e. at voxel i S / (S - 1) - 0.5 (half a voxel off
  at the faces); we pass ras2ijk composed with i' = (i + 0.5)(S - 1) / S so that its samples
  land on the NIfTI grid. It samples `ray_samples` (= longest dimension) points between a
  near and far distance per view (the volume's depth range +- 30 mm), not per ray.

Each worker loads the CT with the renderer's own reader (diffdrr: torchio via `read`;
nanodrr: torchio `ScalarImage` -> `Subject.from_images`; flashdrr: MONAI `LoadImage`, as in
its README), checks its affine against nibabel's and maps HU to attenuation (`prepare_s`),
renders one warm-up view, then times one view per call for all V views (`per_call_s`,
s/view) and `--batch` views per call (default all; `batched_s`, s/view). Writes --out (npz):
`images` (V, rows, cols) float32 from the per-call run (line integrals, in the renderer's
units), `per_call_s`, `batched_s`, `prepare_s`, `notes`, `version`; prints a one-line summary.

HU -> attenuation (`--hu-map`): `default` is each renderer's own map (diffdrr's
`transform_hu_to_density`, nanodrr's `hu_to_mu`; flashdrr's renderer has none, so its README's
linear example clamp(0.05 (1 + HU / 800), 0)). `matched` gives every renderer the same volume,
our renderer's materials at one energy: DeepDRR's density fit times the 60 keV mass
attenuation of air (< -800 HU), soft tissue (< 350 HU) or bone (XrayDB, as xrayfactory), per
mm. Our polychromatic images correlate with that volume's line integrals at >= 0.999, so with
`matched` the correlation with ours measures the rays and the renderer's sampling rather than
the physics (the default maps and our 350 HU soft tissue / bone switch differ enough to bring
bony views to ~0.97-0.99). The map only changes voxel values, not the rendering work.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time

import numpy as np
import torch

RENDERERS = ("diffdrr", "nanodrr", "flashdrr")
HU_MAPS = ("default", "matched")
# Mass attenuation (cm^2/g) at 60 keV of xrayfactory's air, soft tissue and bone (XrayDB).
MU_RHO_60KEV = (0.18747, 0.20485, 0.31483)
AIR_MAX_HU, SOFT_MAX_HU = -800.0, 350.0


# ----------------------------------------------------------------------------- geometry


def rq3(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x3 m = K R, K upper triangular with positive diagonal, R orthonormal (det +-1)."""
    flip = np.eye(3)[::-1]
    q, r = np.linalg.qr((flip @ m).T)
    k, rot = flip @ r.T @ flip, flip @ q.T
    signs = np.diag(np.sign(np.diag(k)))
    return k @ signs, signs @ rot


class Geometry:
    """Per-view rays of projection matrices P (V, 3, 4) for a CT grid (affine, shape)."""

    def __init__(self, p: np.ndarray, rows: int, cols: int, affine: np.ndarray, shape):
        self.p = np.asarray(p, float).reshape(-1, 3, 4)
        self.rows, self.cols = int(rows), int(cols)
        m = self.p[:, :, :3]
        minv = np.linalg.inv(m)
        self.source = -np.einsum("vij,vj->vi", minv, self.p[:, :, 3])  # (V, 3)
        scale = np.linalg.norm(m[:, 2], axis=1)  # P = scale K [R | t], K[2, 2] = 1
        self.unit_depth = minv * scale[:, None, None]  # inv(M) [c, r, 1] at depth 1
        self.k = np.empty_like(m)
        self.r = np.empty_like(m)
        for v in range(len(m)):
            k, r = rq3(m[v])
            self.k[v], self.r[v] = k / k[2, 2], r
        # Depth of the CT's corners (voxel faces) along each principal ray.
        s = np.asarray(shape, float)
        corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]) * s - 0.5
        world = corners @ affine[:3, :3].T + affine[:3, 3]
        depth = np.einsum("vc,vkc->vk", self.r[:, 2], world[None] - self.source[:, None])
        centre = ((s - 1) / 2) @ affine[:3, :3].T + affine[:3, 3]
        if np.any(np.einsum("vc,vc->v", self.r[:, 2], centre - self.source) <= 0):
            sys.exit("drr_worker: some P do not have the CT centre in front of the source (w > 0)")
        self.reach = depth.max(axis=1) * 1.02 + 10.0  # a detector distance beyond the CT

    @property
    def views(self) -> int:
        return len(self.p)

    def pixels(self) -> np.ndarray:
        """(rows * cols, 3) homogeneous pixels [col, row, 1], row-major."""
        row, col = np.meshgrid(np.arange(self.rows), np.arange(self.cols), indexing="ij")
        return np.stack([col.ravel(), row.ravel(), np.ones(col.size)], axis=1).astype(float)

    def same_intrinsics(self) -> bool:
        return bool(np.allclose(self.k, self.k[:1], rtol=1e-9, atol=1e-9))


def nifti_affine(ct: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    import nibabel as nib

    img = nib.load(ct)
    return np.asarray(img.affine, float), tuple(int(n) for n in img.shape[:3])


def check_affine(name: str, affine, reference: np.ndarray) -> None:
    a = np.asarray(affine, float)
    if not np.allclose(a, reference, atol=1e-3):
        sys.exit(f"drr_worker: {name}'s reader gives affine\n{a}\nnot nibabel's\n{reference}")


def matched_mu(hu: torch.Tensor) -> torch.Tensor:
    """Linear attenuation (1/mm) of our materials at 60 keV (see --hu-map matched)."""
    hu = hu.float()
    rho = torch.minimum(0.001029 * hu + 1.030, 0.0005886 * hu + 1.03).clamp(min=0.0)
    air, soft, bone = MU_RHO_60KEV
    mu_rho = torch.where(hu < AIR_MAX_HU, air, torch.where(hu < SOFT_MAX_HU, soft, bone))
    return rho * mu_rho / 10.0


def attenuation_note(hu_map: str, default: str) -> str:
    """The notes' words on the HU -> attenuation map: ours (--hu-map matched) or the renderer's."""
    if hu_map == "matched":
        return (
            "attenuation = --hu-map matched (DeepDRR density x 60 keV mass attenuation of "
            "air/soft tissue/bone, thresholds -800/350 HU)"
        )
    return default


# ----------------------------------------------------------------------------- renderers


class DiffDRRWorker:
    """diffdrr: world-space source/target points straight into `DRR.render` (Siddon)."""

    package = "diffdrr"

    def __init__(self, ct: str, geom: Geometry, affine: np.ndarray, device: str, hu_map: str):
        from diffdrr.data import read
        from diffdrr.drr import DRR

        subject = read(ct, orientation=None, center_volume=False)
        check_affine("diffdrr", subject.volume.affine, affine)
        f = float(geom.k[0, 0, 0])
        sdd = float(geom.reach.max())
        # DRR builds a Detector that render() does not use: it gets our rays directly.
        self.drr = DRR(
            subject, sdd=sdd, height=geom.rows, width=geom.cols, delx=sdd / f, renderer="siddon"
        ).to(device)
        if hu_map == "matched":  # replaces the density that read() made
            self.drr.density = matched_mu(subject.volume.data.squeeze()).to(device)
        kw = {"dtype": torch.float32, "device": device}
        self.source = torch.as_tensor(geom.source, **kw)
        self.dirs = torch.as_tensor(geom.unit_depth, **kw)
        self.reach = torch.as_tensor(geom.reach, **kw)
        self.pixels = torch.as_tensor(geom.pixels(), **kw)
        self.shape = (geom.rows, geom.cols)
        self.notes = (
            "diffdrr Siddon (nearest voxel, exact plane crossings); read(orientation=None, "
            "center_volume=False); rays as world source/target points to DRR.render (Detector "
            "bypassed); batches any number of views (memory ~ views x pixels x planes); "
        )
        self.notes += attenuation_note(
            hu_map,
            "density = diffdrr's default transform_hu_to_density (bone_attenuation_"
            "multiplier=1, HU rescaled to [0, 1], air set to the lowest soft tissue value)",
        )

    def render(self, idx: list[int]) -> torch.Tensor:
        src = self.source[idx]
        dirs = torch.einsum("bij,nj->bni", self.dirs[idx], self.pixels)
        tgt = src[:, None] + self.reach[idx][:, None, None] * dirs
        img = self.drr.render(self.drr.density, src[:, None], tgt)
        return img.reshape(len(idx), *self.shape)


class NanoDRRWorker:
    """nanodrr: its own k_inv / rt_inv camera model, torch (grid_sample) backend."""

    package = "nanodrr"

    def __init__(self, ct: str, geom: Geometry, affine: np.ndarray, device: str, hu_map: str):
        from nanodrr.data import Subject
        from nanodrr.drr import render
        from torchio import ScalarImage

        self._render = render
        image = ScalarImage(ct)
        if hu_map == "matched":
            image = ScalarImage(tensor=matched_mu(image.data), affine=image.affine)
            self.subject = Subject.from_images(image, convert_to_mu=False).to(device)
        else:
            self.subject = Subject.from_images(image).to(device)
        check_affine("nanodrr", self.subject.voxel_to_world.double().cpu(), affine)
        _ = self.subject.image  # HU -> mu now (cached), not in the timed calls
        self.n_samples = int(max(self.subject.image.shape[-3:]))
        k = geom.k.copy()
        k[:, :2, 2] += 0.5  # nanodrr's pixel (u, v) = (col + 0.5, row + 0.5)
        rt_inv = np.zeros((geom.views, 4, 4))
        rt_inv[:, :3, :3] = geom.r.transpose(0, 2, 1)
        rt_inv[:, :3, 3] = geom.source
        rt_inv[:, 3, 3] = 1.0
        kw = {"dtype": torch.float32, "device": device}
        self.k_inv = torch.as_tensor(np.linalg.inv(k), **kw)
        self.rt_inv = torch.as_tensor(rt_inv, **kw)
        self.sdd = torch.as_tensor(geom.reach, **kw)
        self.shape = (geom.rows, geom.cols)
        self.notes = (
            f"nanodrr render(backend='torch'), trilinear, n_samples={self.n_samples} (longest "
            "volume dimension) over each ray's clipped part; k_inv from our K (principal point "
            "+0.5 px for its pixel-corner convention), rt_inv = [[R^T, s], [0, 1]], sdd = a "
            "distance beyond the CT; batches any number of views; "
        )
        self.notes += attenuation_note(
            hu_map,
            "mu = nanodrr's default hu_to_mu (mu_water 0.0192, mu_bone 0.0573 /mm, hu_bone 1000)",
        )

    def render(self, idx: list[int]) -> torch.Tensor:
        img = self._render(
            self.subject,
            self.k_inv[idx],
            self.rt_inv[idx],
            self.sdd[idx],
            self.shape[0],
            self.shape[1],
            n_samples=self.n_samples,
            backend="torch",
        )
        return img[:, 0]


class FlashDRRWorker:
    """flashdrr: VolumeRaycaster's CPU (grid_sample) path with our view matrices and ray table."""

    package = "flashdrr"

    def __init__(self, ct: str, geom: Geometry, affine: np.ndarray, device: str, hu_map: str):
        try:
            from flashdrr.rendering import VolumeRaycaster
        except ImportError as e:
            sys.exit(f"drr_worker: flashdrr has no CPU path here (no VolumeRaycaster: {e})")
        from monai.transforms import EnsureChannelFirst, LoadImage

        vol = EnsureChannelFirst()(LoadImage()(ct))  # (1, I, J, K) HU, meta affine (RAS)
        ijk2ras = np.asarray(vol.meta["affine"], float)
        check_affine("flashdrr (MONAI)", ijk2ras, affine)
        hu = torch.as_tensor(np.asarray(vol[0]), dtype=torch.float32)
        if hu_map == "matched":
            mu = matched_mu(hu)
        else:  # flashdrr's README example "linear HU -> mu" map (its renderer has no default)
            mu = torch.clamp(0.05 * (1.0 + hu / 800.0), min=0.0)
        self.mu = mu[None, None].to(device)
        size = np.asarray(hu.shape, float)
        fix = np.eye(4)  # i' = (i + 0.5)(S - 1) / S undoes its half-voxel grid offset
        fix[:3, :3] = np.diag((size - 1) / size)
        fix[:3, 3] = 0.5 * (size - 1) / size
        kw = {"dtype": torch.float32, "device": device}
        self.ras2ijk = torch.as_tensor(fix @ np.linalg.inv(ijk2ras), **kw)
        self.n_samples = int(size.max())
        self.ren = VolumeRaycaster(
            ray_samples=self.n_samples,
            resolution=(geom.cols, geom.rows),
            return_tau=True,
            i0=None,
            scatter=None,
        ).to(device)
        self.ren.eval()
        view = np.zeros((geom.views, 4, 4))
        view[:, :3, 0] = geom.r[:, 0]  # right = image column axis
        view[:, :3, 1] = -geom.r[:, 1]  # up = minus the image row axis
        view[:, :3, 2] = geom.r[:, 2]  # forward = principal ray
        view[:, :3, 3] = geom.source
        view[:, 3, 3] = 1.0
        self.view = torch.as_tensor(view, **kw)
        self.geom = geom
        self.set_rays(0)
        self.notes = (
            f"flashdrr VolumeRaycaster CPU path (triton=False), return_tau, ray_samples="
            f"{self.n_samples} (longest volume dimension) between per-view near/far (volume "
            "depth range +- 30 mm), trilinear; dirs_cam filled with our per-pixel rays "
            "(set_fov cannot express a principal point or square pixels on non-square "
            "images); ras2ijk corrected for its align_corners=False / (S - 1) half-voxel "
            "offset; batches views sharing one intrinsic K (the volume is repeat_interleave'd "
            "per view); "
        )
        self.notes += attenuation_note(
            hu_map,
            "mu = clamp(0.05 (1 + HU / 800), 0) (its README's linear HU -> mu example; "
            "the renderer has no default)",
        )

    def set_rays(self, v: int) -> None:
        """Fill the raycaster's camera-space unit ray table from view v's intrinsics."""
        d = self.geom.pixels() @ np.linalg.inv(self.geom.k[v]).T  # (N, 3): R^T d is our ray
        d[:, 1] *= -1  # camera y is 'up' = minus the image row axis
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        table = d.reshape(self.geom.rows, self.geom.cols, 3)
        self.ren.dirs_cam = torch.as_tensor(table, dtype=torch.float32, device=self.mu.device)
        self._rays_of = v

    def render(self, idx: list[int]) -> torch.Tensor:
        if not np.allclose(self.geom.k[idx], self.geom.k[self._rays_of], atol=1e-9):
            if not np.allclose(self.geom.k[idx], self.geom.k[idx[0]], atol=1e-9):
                raise ValueError("flashdrr renders one intrinsic K per call")
            self.set_rays(idx[0])
        return self.ren(self.mu, view_mat=self.view[idx], ras2ijk=self.ras2ijk)[:, 0]


WORKERS = {"diffdrr": DiffDRRWorker, "nanodrr": NanoDRRWorker, "flashdrr": FlashDRRWorker}


# ----------------------------------------------------------------------------- timing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--renderer", required=True, choices=RENDERERS)
    ap.add_argument("--ct", required=True, help="NIfTI CT in HU")
    ap.add_argument("--poses", required=True, help="npz with P (V, 3, 4), rows, cols")
    ap.add_argument("--out", required=True, help="result npz")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=0, help="views per batched call (0: all)")
    ap.add_argument(
        "--hu-map",
        default="default",
        choices=HU_MAPS,
        help="HU -> attenuation: the renderer's own (default) or ours at 60 keV (matched)",
    )
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(a.threads)
    except RuntimeError:
        pass
    cuda = a.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with np.load(a.poses) as z:
        p, rows, cols = z["P"], int(z["rows"]), int(z["cols"])
    affine, shape = nifti_affine(a.ct)
    geom = Geometry(p, rows, cols, affine, shape)
    n = geom.views
    batch = a.batch if a.batch > 0 else n
    try:
        version = importlib.metadata.version(a.renderer)
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"drr_worker: {a.renderer} is not installed in {sys.executable}")

    with torch.inference_mode():
        t = time.perf_counter()
        worker = WORKERS[a.renderer](a.ct, geom, affine, a.device, a.hu_map)
        sync()
        prepare_s = time.perf_counter() - t

        worker.render([0])  # warm-up
        sync()

        images = np.empty((n, rows, cols), np.float32)
        t = time.perf_counter()
        for v in range(n):
            images[v] = worker.render([v]).float().cpu().numpy()[0]
        sync()
        per_call_s = (time.perf_counter() - t) / n

        notes = worker.notes
        if a.renderer == "flashdrr" and not geom.same_intrinsics():
            batched_s = float("nan")
            notes += "; batched skipped: the views' intrinsics differ"
        else:
            t = time.perf_counter()
            for start in range(0, n, batch):
                worker.render(list(range(start, min(start + batch, n)))).float().cpu().numpy()
            sync()
            batched_s = (time.perf_counter() - t) / n

    notes += (
        f"; hu-map {a.hu_map}; torch {torch.__version__}, {a.threads} threads, device "
        f"{a.device}, batch {batch}"
    )
    np.savez(
        a.out,
        images=images,
        per_call_s=per_call_s,
        batched_s=batched_s,
        prepare_s=prepare_s,
        notes=notes,
        version=f"{a.renderer} {version}",
    )
    print(
        f"{a.renderer} {version}: {n} views {rows}x{cols} on {a.device}, {a.threads} threads: "
        f"prepare {prepare_s:.2f} s, per-call {per_call_s * 1e3:.1f} ms/view, "
        f"batched ({batch}/call) {batched_s * 1e3:.1f} ms/view"
    )


if __name__ == "__main__":
    main()
