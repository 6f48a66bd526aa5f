"""A statistical shape model of 3D landmarks: new landmark configurations without a CT.

The training subjects' landmarks are centred on their centroid (subjects share the scanner's
patient frame, so orientation differences are kept as real pose variation), then a PCA gives
the mean shape and principal modes. Samples draw mode coefficients from a normal distribution
truncated at `limit` standard deviations, so they stay within the span of plausible shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xrayfactory.core.errors import InputError


@dataclass(frozen=True)
class ShapeModel:
    names: list[str]
    mean: np.ndarray  # (L, 3) mm, centroid at the origin
    modes: np.ndarray  # (K, L * 3) orthonormal rows
    sd: np.ndarray  # (K,) standard deviation of each mode's coefficient (mm)

    @classmethod
    def fit(cls, shapes: np.ndarray, names: list[str], where: str) -> ShapeModel:
        """`shapes` (S, L, 3): one landmark configuration per training subject."""
        shapes = np.asarray(shapes, float)
        if shapes.ndim != 3 or shapes.shape[1:] != (len(names), 3) or len(shapes) == 0:
            raise InputError(
                where, f"need (subjects, {len(names)}, 3) landmark shapes, got {shapes.shape}"
            )
        centred = shapes - shapes.mean(axis=1, keepdims=True)
        mean = centred.mean(axis=0)
        dev = (centred - mean).reshape(len(shapes), -1)
        _, s, vt = np.linalg.svd(dev, full_matrices=False)
        sd = s / np.sqrt(max(len(shapes) - 1, 1))
        keep = sd > 1e-6 * max(sd.max(initial=0.0), 1.0)
        return cls(list(names), mean, vt[keep], sd[keep])

    def sample(
        self, n: int, rng: np.random.Generator, *, scale: float = 1.0, limit: float = 2.5
    ) -> np.ndarray:
        """(n, L, 3) centred shapes: mean + sum_k b_k mode_k with b_k ~ N(0, (scale sd_k)^2)
        truncated at `limit` sd."""
        b = np.clip(rng.standard_normal((n, len(self.sd))), -limit, limit) * self.sd * scale
        return self.mean + (b @ self.modes).reshape(n, *self.mean.shape)


def shape_model_from_files(paths: list[str], names: list[str]) -> ShapeModel:
    """Fit the shape model to the subjects' landmark CSVs."""
    from xrayfactory.cohort.landmarks import load_landmarks

    shapes = [np.stack(list(load_landmarks(p, names).values())) for p in paths]
    return ShapeModel.fit(np.stack(shapes), list(names), ", ".join(map(str, paths)))


def pairwise_distances(shapes: np.ndarray) -> np.ndarray:
    """(..., L, 3) -> (..., L, L) Euclidean distances between landmarks."""
    return np.linalg.norm(shapes[..., :, None, :] - shapes[..., None, :, :], axis=-1)
