"""Online distillation, the baseline that stored views are measured against: the teachers run inside the training
loop on views drawn afresh every epoch, as the seed papers' teachers do (no store lookup of their outputs).

The store still supplies the clips, the augmentation policy, the label space and the teachers' provenance, so an
online run and an offline run from the same store differ only in where the targets come from.
"""

from __future__ import annotations

import torch

from kd.core.audio import resample
from kd.core.augment import view_seed
from kd.core.errors import ConfigError
from kd.stores.logit_store import LogitStore
from kd.stores.targets import EnsembleSpec, combine
from kd.train.distill_data import DistillDataset

EPOCH_VIEW_OFFSET = 1 << 20
"""Online views are numbered from here, far past any stored view index, so they are never a stored view."""


class OnlineDataset(torch.utils.data.Dataset):
    """One fresh augmented view of each training clip per epoch; items carry the waveform for the live teachers.

    A view's seed is a pure function of (seed, clip id, epoch), so a resumed online run draws the same views.
    """

    def __init__(self, stored: DistillDataset, clip_ids: list[str], seed: int) -> None:
        self.stored = stored
        self.clip_ids = clip_ids
        self.seed = seed
        self.clips = sorted({clip for clip, _ in stored.rows})
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        data, clip = self.stored, self.clips[index]
        view = EPOCH_VIEW_OFFSET + self.epoch
        wave, feats, params = data.render(clip, view, view_seed(self.seed, self.clip_ids[clip], view))
        return {
            "features": feats,
            "waves": wave,
            "labels": data.labels(clip, params),
            "row": torch.tensor([clip, view]),
        }


class LiveEnsemble:
    """The store's teachers, rebuilt from their weights (sha256 checked against the store), as a target function."""

    def __init__(self, store: LogitStore, spec: EnsembleSpec, checkpoints: dict[str, str], device: torch.device):
        from kd.teachers import create_teacher

        self.spec, self.rate, self.num_classes = spec, store.policy.sample_rate, len(store.labels)
        self.teachers = []
        for name in spec.names:
            teacher = create_teacher(name, checkpoint=checkpoints.get(name)).to(device)
            stored = store.teacher(name).attrs.get("checkpoint_sha256", "")
            if stored and teacher.checkpoint_sha256 and stored != teacher.checkpoint_sha256:
                raise ConfigError(
                    f"online teacher {name}: weights sha256 {teacher.checkpoint_sha256[:12]}... differ from the "
                    f"store's {stored[:12]}...; pass the checkpoint the store was dumped with"
                )
            index = torch.as_tensor(teacher.labels.map_to(store.labels).index)
            self.teachers.append((teacher, index))

    @torch.no_grad()
    def targets(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Views [batch, samples] at the policy's rate -> (targets, mask) as `combine` gives for stored logits."""
        full = []
        for teacher, index in self.teachers:
            logits = teacher.logits(resample(waves, self.rate, teacher.card.sample_rate)).float().cpu()
            valid = index >= 0
            out = torch.full((len(waves), self.num_classes), float("nan"))
            out[:, index[valid]] = logits[:, valid]
            full.append(out)
        return combine(full, self.spec)
