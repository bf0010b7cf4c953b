"""Export tasks, one module each: ``response``, ``emotion``, ``strategy``, ``traits`` (see :mod:`.base`)."""

from finetune.tasks.base import ExportTask, build_tasks, task_names

__all__ = ["ExportTask", "build_tasks", "task_names"]
