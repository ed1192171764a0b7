"""Local file mechanics shared by ivfarm, drivers and vrouter: one exclusive file lock, one atomic write.

Standard library only; it imports nothing of ours, so every other package may import it.
"""
