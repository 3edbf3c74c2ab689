"""Average accuracy and forgetting as SparCL's script computes them, on hand-made accuracy matrices."""

from __future__ import annotations

import pytest

from spfde_core.continual.metrics import average_accuracy, average_forgetting


def test_forgetting_and_average_on_a_hand_example() -> None:
    matrix = [
        [0.9, 0.0, 0.0],
        [0.6, 0.8, 0.0],
        [0.5, 0.7, 0.9],
    ]
    assert average_forgetting(matrix, 0) == 0.0
    assert average_forgetting(matrix, 1) == pytest.approx(0.9 - 0.6)
    assert average_forgetting(matrix, 2) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    assert average_accuracy(matrix[2], 2) == pytest.approx(0.7)
    assert average_accuracy(matrix[1], 1) == pytest.approx(0.7)  # tasks not seen yet do not count


def test_forgetting_counts_the_current_row_in_the_maximum() -> None:
    # Task 0 improves after task 1 (backward transfer): the script's max includes the current row -> 0, not -0.05.
    matrix = [[0.90, 0.0], [0.95, 0.8]]
    assert average_forgetting(matrix, 1) == 0.0
    # ... and the best *earlier* row counts, not the first one.
    matrix = [[0.5, 0.0, 0.0], [0.9, 0.8, 0.0], [0.6, 0.8, 0.7]]
    assert average_forgetting(matrix, 2) == pytest.approx(((0.9 - 0.6) + 0.0) / 2)


def test_rows_from_before_a_task_was_trained_never_count_as_its_best() -> None:
    # Task-IL: an untrained task's 2-way accuracy sits near chance (0.5), above what training it and then
    # forgetting may leave. The script's matrix has 0 there (it evaluates seen tasks only), so it is no maximum.
    matrix = [[0.95, 0.50, 0.52], [0.90, 0.45, 0.49], [0.85, 0.40, 0.90]]
    # task 0: 0.95 -> 0.85; task 1: best since it was trained (row 1) 0.45 -> 0.40; row 0's 0.50 is skipped
    assert average_forgetting(matrix, 2) == pytest.approx(((0.95 - 0.85) + (0.45 - 0.40)) / 2)
    zeroed = [[0.95, 0.0, 0.0], [0.90, 0.45, 0.0], [0.85, 0.40, 0.90]]  # the script's zero-filled matrix
    assert average_forgetting(matrix, 2) == pytest.approx(average_forgetting(zeroed, 2))
