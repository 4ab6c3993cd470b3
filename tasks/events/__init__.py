"""Event-camera tasks (DVS128 Gesture, CIFAR10-DVS): file readers, event streams and their frames, the
frame cache, augmentation and the shared task base; see task.py."""
