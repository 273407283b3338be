"""Rendering: DagSpec -> Python source (a file of its own, or a builder function)."""

from composer.render.dagfile import builder_name, render_builder, render_dag

__all__ = ["builder_name", "render_builder", "render_dag"]
