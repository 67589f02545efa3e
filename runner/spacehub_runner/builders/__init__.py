"""Builders: turn a build plan and a source tree into a content-named artifact (`spacehub_runner.plugs`)."""
