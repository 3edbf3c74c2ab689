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
