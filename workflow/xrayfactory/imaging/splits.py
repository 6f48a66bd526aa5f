"""Per-fold training and test sets drawn from an arm's image-set shards."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from xrayfactory.core.errors import InputError
from xrayfactory.core.rng import rng_for
from xrayfactory.imaging.imageset import DATASETS, ImageSet, concatenate, read_imageset

# arms made per fold, to order: their training sets take images in the order they were made
GENERATED = ("synth2d", "synth3d", "synth3d_nolatent")
# a control draws its parent arm's images (the same ids), so that it differs from that arm only
# in what it isolates: the synth3d grid or autoencoder (drr), the synth2d image size (real),
# the latent diffusion model (synth3d)
SELECTS_AS = {
    "drr_grid": "drr",
    "drr_recon": "drr",
    "real_resized": "real",
    "synth3d_nolatent": "synth3d",
}


def subset(s: ImageSet, idx: np.ndarray) -> ImageSet:
    return ImageSet(*(getattr(s, d)[idx] for d in DATASETS), attrs=dict(s.attrs))


def load_arm(shards: list[str]) -> ImageSet:
    return concatenate([read_imageset(p) for p in shards], ", ".join(map(str, shards)))


def shards_by_arm(shards: list[str]) -> dict[str, list[ImageSet]]:
    """The image sets in `shards`, grouped by the arm that made them (in order)."""
    by_arm = defaultdict(list)
    for path in shards:
        shard = read_imageset(path)
        by_arm[shard.attrs.get("arm")].append(shard)
    return by_arm


def selection_order(pool: np.ndarray, n_default: int, rng_key: tuple) -> np.ndarray:
    """The `pool` indices in the order training sets take them: a set of n images is the first
    n. The first `n_default` are the default training set's seeded draw (in random order), the
    rest of the pool follows in a seeded order; so a smaller set is a subset of a larger one,
    and sets of other sizes never change the default set."""
    rng = rng_for(*rng_key)
    first = rng.choice(pool, size=n_default, replace=False)
    return np.concatenate([first, rng.permutation(np.setdiff1d(pool, first))])


def selection(
    s: ImageSet, subjects: list[str], n: int, n_default: int, rng_key: tuple, where: str
) -> np.ndarray:
    """Sorted indices of exactly `n` images of `subjects`: the first `n` of their selection
    order (`n_default`: the size of the default training set, detector.train_images)."""
    pool = np.flatnonzero(np.isin(s.subject, subjects))
    for count, what in ((n_default, "detector.train_images"), (n, "the training set")):
        if len(pool) < count:
            raise InputError(
                where,
                f"{len(pool)} training images for subjects {subjects}, fewer than {what} = {count}",
            )
    return np.sort(selection_order(pool, n_default, rng_key)[:n])


def generation_order(ids: np.ndarray) -> np.ndarray:
    """A generated arm's images (their image_ids) in the order they were made: each generated
    subject's (a synth3d volume's) k-th image before any (k+1)-th, subjects in shard order; so
    the first n are a prefix that making more images never changes, spread over every volume."""
    k = np.array([int(i.rsplit("/", 1)[1]) for i in ids])
    return np.argsort(k, kind="stable")


def training_set(s: ImageSet, subjects: list[str], n: int, rng_key: tuple, where: str) -> ImageSet:
    """Exactly `n` images of the training subjects (the default training set's draw)."""
    return subset(s, selection(s, subjects, n, n, rng_key, where))


def arm_training_set(
    arm: str,
    fold: int,
    train_subjects: list[str],
    pool: ImageSet,
    n: int,
    seed: int,
    *,
    n_default: int | None = None,
) -> tuple[ImageSet, list[str]]:
    """The `n` images arm `arm`'s detector of seed `seed` trains on in fold `fold` (the same
    selection for its training, the synth2d generator's (arm real) and realism; a control takes
    its parent's, SELECTS_AS) and their image ids: images of the fold's training subjects only,
    whatever else the pool holds. Generated arms hold one fold each and give their first `n`
    images in generation order (the same for every seed: the generator's seed drew them).
    `n_default` (default `n`): the default training set's size, whose draw starts every size's
    selection order."""
    candidates = sorted(train_subjects)
    where = f"arm {arm}, fold {fold}"
    ids = image_ids(pool.subject)
    if "fold" in pool.attrs:
        if pool.attrs["fold"] != fold:
            raise InputError(
                f"image sets of arm {arm}", f"generated for fold {pool.attrs['fold']}, not {fold}"
            )
        candidates = sorted(set(pool.subject))
    if arm in GENERATED:
        if len(pool) < n:
            raise InputError(where, f"{len(pool)} generated images, fewer than the {n} asked for")
        idx = np.sort(generation_order(ids)[:n])
    else:
        key = (seed, "select", SELECTS_AS.get(arm, arm), fold)
        idx = selection(pool, candidates, n, n_default or n, key, where)
    return subset(pool, idx), ids[idx].tolist()


def realism_sample(
    arm: str,
    fold: int,
    train_subjects: list[str],
    pool: ImageSet,
    n: int,
    n_train: int,
    seed: int,
) -> ImageSet | None:
    """`n` of the `n_train` images the arm's detector of seed `seed` trains on in the fold; for
    `real`, `n` real images of the training subjects that detector (the realism feature
    network) did not train on. None when the fold has fewer than `n` such real images."""
    chosen, ids = arm_training_set(arm, fold, train_subjects, pool, n_train, seed)
    if arm == "real":
        unseen = np.isin(pool.subject, train_subjects) & ~np.isin(image_ids(pool.subject), ids)
        chosen = subset(pool, np.flatnonzero(unseen))
    if len(chosen) < n:
        return None
    rng = rng_for(seed, "realism", SELECTS_AS.get(arm, arm), fold)
    idx = np.sort(rng.choice(len(chosen), n, replace=False))
    return subset(chosen, idx)


def image_ids(subjects: np.ndarray) -> np.ndarray:
    """Stable image ids "subject/k": the k-th image of that subject in an arm's shards."""
    seen: dict[str, int] = {}
    ids = []
    for subject in subjects:
        ids.append(f"{subject}/{seen.get(subject, 0)}")
        seen[subject] = seen.get(subject, 0) + 1
    return np.array(ids)


def load_test_set(shards: list[str], where: str) -> tuple[ImageSet, np.ndarray]:
    """A fold's test images (its test subjects' shards, all of them) and their ids."""
    pool = load_arm(shards)
    return held_out_set(pool, sorted(set(pool.subject)), where)


def held_out_set(s: ImageSet, subjects: list[str], where: str) -> tuple[ImageSet, np.ndarray]:
    """All images of the test subjects and their ids (subject/index within the subject)."""
    idx = np.flatnonzero(np.isin(s.subject, subjects))
    if len(idx) == 0:
        raise InputError(where, f"empty test fold: no images of subjects {subjects}")
    return subset(s, idx), image_ids(s.subject)[idx]
