"""Layer 0: what every layer uses. Device and seeding, repository paths, atomic file writes, progress bars.

Imports nothing from the rest of ``course_lib``.
"""
