"""Rendering: DagSpec -> the Python source of one static DAG file."""

from composer.rendering.dagfile import render_dag

__all__ = ["render_dag"]
