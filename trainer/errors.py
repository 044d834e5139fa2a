"""Errors of the trainer: bad inputs and unusable models, each with a message saying what to fix."""

from __future__ import annotations

from services.core.errors import AstrostreamError


class TrainerError(AstrostreamError):
    """Root of the trainer's errors; the CLI prints the message and exits non-zero."""


class TrainingDataError(TrainerError):
    """A papers or pairs file is missing, empty, unreadable or lacks a required column."""


class BaseModelError(TrainerError):
    """The base model (or the current model to compare against) cannot be loaded."""


class CheckpointError(TrainerError):
    """A checkpoint folder belongs to another run or cannot be used."""
