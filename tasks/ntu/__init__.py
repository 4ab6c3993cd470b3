"""NTU RGB+D 60 and 120 skeleton action recognition: the task (`task`), its file parser, preprocessings,
cache, splits and encoder; see task.py for the pipeline."""
