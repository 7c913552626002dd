"""The Slicer-facing layer of MedSegAI: turns core results into MRML nodes and runs the core in a
child process. Modules here may import ``slicer``; the core (MedSegAILib) never imports them."""
