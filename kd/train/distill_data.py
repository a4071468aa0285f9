"""The training input: (clip, view) rows of a store, each replayed from its seed, with ensemble soft targets."""

from __future__ import annotations

import numpy as np
import torch

from kd.core.audio import resample
from kd.core.augment import apply_freq_masks, draw_view
from kd.core.errors import StoreError
from kd.core.views import render_view
from kd.stores.checks import check_loaded
from kd.stores.logit_store import LogitStore
from kd.stores.targets import EnsembleSpec, clip_means, combine, expand_topk, toward_clip_means


class DistillDataset(torch.utils.data.Dataset):
    """Rows (clip, view) usable for every teacher of the ensemble; items are student features and targets.

    Teacher arrays are loaded into memory here, before DataLoader workers fork (a Zarr row read costs ~1 ms). With a
    `feature_cache` directory, stored views' features (before frequency masks) are read from it once written there;
    see kd/train/feature_cache.py. With `clip_mean_weight` > 0 each target moves that far towards its clip's mean
    target over the used views (the teachers averaged over augmentations, see `toward_clip_means`).
    """

    def __init__(
        self,
        store: LogitStore,
        spec: EnsembleSpec,
        frontend: torch.nn.Module,
        sample_rate: int,
        clips: np.ndarray | None = None,
        views: list[int] | None = None,
        allow_partial: bool = False,
        audio_root: str | None = None,
        augment: bool = True,
        feature_cache: str | None = None,
        clip_mean_weight: float = 0.0,
    ) -> None:
        self.policy = store.policy
        self.table = store.clip_table(audio_root)
        self.seeds = store.seeds()
        self.spec = spec
        self.frontend = frontend
        self.sample_rate = sample_rate
        self.augment = augment
        self.num_classes = len(store.labels)
        self.num_views = store.num_views
        self.cache = None
        if feature_cache is not None:
            from kd.train.feature_cache import FeatureCache

            self.cache = FeatureCache(feature_cache, store, frontend, sample_rate, self.features_of)
        self.arrays = []
        usable = np.ones((store.num_clips, store.num_views), dtype=bool)
        loaded = {}
        for name in spec.names:
            group = store.teacher(name)
            done = group.done_blocks()
            if not done.all() and not allow_partial:
                raise StoreError(
                    f"{store.path}: teacher {name!r} has {int((~done).sum())} of {len(done)} blocks incomplete; "
                    "finish the dump or pass --allow-partial"
                )
            arrays = group.load()
            loaded[name] = (arrays, done)
            block_done = np.repeat(done, store.block_size)[: store.num_clips]
            usable &= ~arrays["failed"] & block_done[:, None]
            self.arrays.append(arrays)
        # Zarr reads a lost chunk as fill values that look like data: check everything loaded, cheaply, once.
        check_loaded(store, spec.names, loaded)
        label_space = store.labels
        self.label_index = [
            [label_space.index(x) for x in labels if x in label_space] for labels in store.clip_labels()
        ]
        clips = np.arange(store.num_clips) if clips is None else np.asarray(clips)
        views = list(range(store.num_views)) if views is None else views
        self.rows = [(int(c), v) for c in clips for v in views if usable[c, v]]
        if not self.rows:
            raise StoreError(f"{store.path}: no usable (clip, view) rows for teachers {spec.names}")
        self.clip_mean_weight = clip_mean_weight
        self.means = self._clip_means(views, usable) if clip_mean_weight else None

    def _clip_means(self, views: list[int], usable: np.ndarray, chunk: int = 256) -> torch.Tensor:
        """[clips, C] mean target of every clip of the store (partners may lie outside `clips`) over its usable
        views among `views` that hear the clip alone; computed in chunks of clips to bound memory."""
        out = []
        for start in range(0, len(self.table), chunk):
            clips = np.arange(start, min(start + chunk, len(self.table)))
            targets, _ = self.targets(*np.ix_(clips, views))
            alone = [
                [
                    usable[c, v] and draw_view(self.policy, int(self.seeds[c, v]), c, len(self.table), v).partner < 0
                    for v in views
                ]
                for c in clips
            ]
            out.append(clip_means(targets, torch.tensor(alone)))
        return torch.cat(out)

    def __len__(self) -> int:
        return len(self.rows)

    def targets(self, clip, view) -> tuple[torch.Tensor, torch.Tensor]:
        """Ensemble targets and mask of a (clip, view) row, or of index arrays that broadcast together ([..., C])."""
        full = [
            expand_topk(a["logits"][clip, view], a["indices"][clip, view], a["rest"][clip, view], a["covered"])
            for a in self.arrays
        ]
        return combine(full, self.spec)

    def mean_targets(self, max_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean soft target and the mean label per class over (an even sample of at most `max_rows` of) the rows.

        The student's output bias starts at the logit of this prior: from a zero bias every one of the hundreds of
        mostly-empty classes starts at probability 0.5, and the first, input-independent gradient ("lower every
        class") drags all features into one direction that the student then never leaves (ESC-50: a student that
        outputs the teachers' average for every clip).
        """
        rows = [self.rows[i] for i in np.linspace(0, len(self.rows) - 1, min(max_rows, len(self.rows))).astype(int)]
        clips, views = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        targets, _ = self.targets(clips, views)
        labels = torch.zeros(self.num_classes)
        for clip in clips:
            labels[self.label_index[clip]] += 1.0 / len(clips)
        return targets.mean(0), labels

    def labels(self, clip: int, params) -> torch.Tensor:
        """Multi-hot ground truth; a two-clip view's labels are weighted like its audio (by amplitude or time share)."""
        out = torch.zeros(self.num_classes)
        out[self.label_index[clip]] = params.mix_weight
        if params.partner >= 0:
            partner = torch.zeros(self.num_classes)
            partner[self.label_index[params.partner]] = 1 - params.mix_weight
            out = torch.maximum(out, partner)
        return out

    def features_of(self, wave: torch.Tensor) -> torch.Tensor:
        """The student's features of a waveform [samples] at the policy's rate, before frequency masks."""
        with torch.no_grad():
            return self.frontend(resample(wave, self.policy.sample_rate, self.sample_rate)[None])[0]

    def render(self, clip: int, view: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, object]:
        """Replays one view: its waveform at the policy's rate, the student's features, and the view's parameters."""
        params = draw_view(self.policy, seed, clip, len(self.table), view)
        wave = render_view(self.table, clip, params, self.policy)
        feats = self.features_of(wave)
        if self.augment:
            feats = apply_freq_masks(feats, params.freq_masks)
        return wave, feats, params

    def stored_view(self, clip: int, view: int) -> tuple[torch.Tensor, object]:
        """A stored view's features (from the feature cache when it has them) and its parameters, as `render`."""
        params = draw_view(self.policy, int(self.seeds[clip, view]), clip, len(self.table), view)
        row = clip * self.num_views + view
        feats = self.cache.get(row) if self.cache is not None else None
        if feats is None:
            feats = self.features_of(render_view(self.table, clip, params, self.policy))
            if self.cache is not None:
                self.cache.put(row, feats)
        if self.augment:
            feats = apply_freq_masks(feats, params.freq_masks)
        return feats, params

    def __getitem__(self, index: int) -> dict:
        clip, view = self.rows[index]
        feats, params = self.stored_view(clip, view)
        targets, mask = self.targets(clip, view)
        if self.means is not None:
            partner = self.means[params.partner] if params.partner >= 0 else None
            targets = toward_clip_means(targets, self.means[clip], partner, params.mix_weight, self.clip_mean_weight)
        return {
            "features": feats,
            "targets": targets,
            "mask": mask,
            "labels": self.labels(clip, params),
            "row": torch.tensor([clip, view]),
        }
