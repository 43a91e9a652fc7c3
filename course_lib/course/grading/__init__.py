"""Grading students' notebooks so that no submission can forge its grade or reach anything else.

Modules, in the order a grading goes: ``submission`` (read and check every file first; find the submitted
functions in their cells), ``isolation`` and ``launcher`` (bubblewrap sandboxes with limits), ``grader`` (run
each notebook isolated, then the probe; a class at once), ``probe`` (the program that runs the submitted
functions in a fresh sandboxed interpreter) and ``exercises`` (its driver and the verdicts), ``quizzes``,
``similarity`` (review flags), ``report`` (terminal, feedback, CSV), ``cli`` (``course grade``).
"""
