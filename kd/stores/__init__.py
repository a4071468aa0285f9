"""The Zarr logit store: layout, creation, teacher groups, readers and ensemble targets."""

from kd.stores.logit_store import LogitStore, TeacherGroup, create_store

__all__ = ["LogitStore", "TeacherGroup", "create_store"]
