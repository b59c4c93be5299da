"""Commands (train, align, aggregate, plot_curves, bench): the top layer, which wires agents to
the plugins. Importing it registers the world models and objectives even where the project is
run from a source tree without being installed (no entry points)."""
import representations  # noqa: F401  (registers the objectives)
import world_models  # noqa: F401  (registers the world models)
