"""Check the workshop's exercises: one module per notebook, one checker per exercise.

    from telemetry_lab.exercises.nb05 import check_exercise_1
    await check_exercise_1(job_worker)      # prints ✅, or raises ExerciseRejected

Every checker runs the learner's answer against the package and ends in one of three ways:

- it passes: one line, "✅ Exercise 1 passed", and a `Result` with `passed` True;
- it is rejected: `ExerciseRejected` (an `AssertionError`) names the likely mistake and
  gives a hint, never a bare value;
- it was not attempted yet (the stub still raises `NotImplementedError`): one line saying
  what to do, and no error, so "Run All" never stops at an exercise nobody has tried.

Checkers never patch globals, own every task they start and finish it before they return.
A notebook keeps the solution in a collapsed cell of its own, under another name
(`solution_job_worker`), checked with `solution=True`: "Run All" never replaces a
learner's answer, and CI proves every solution passes its checker.
"""

from telemetry_lab.exercises._check import (
    ExerciseRejected,
    Result,
    cancel_new_tasks,
    exercise,
    is_stub,
    reject,
    surface,
)

__all__ = [
    "ExerciseRejected",
    "Result",
    "cancel_new_tasks",
    "exercise",
    "is_stub",
    "reject",
    "surface",
]
