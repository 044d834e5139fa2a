"""The trainer: fine-tune, evaluate, version and promote the sentence model.

The command is ``trainer.cli.train`` (``astrostream train``, ``python -m trainer``).
"""
