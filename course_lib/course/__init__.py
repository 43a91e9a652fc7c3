"""Layer 6: the course itself. Command line (``cli``), doctor, notebook build and runs, quizzes and their
bank, learner progress, exercise checkers, grading. Importing this package loads nothing heavy.
"""
