"""The quiz bank: one JSON file per notebook (questions, exercises, points), read by ``course_lib.course.bank``."""
