"""The ``scrub`` command line."""

from __future__ import annotations

import warnings

import typer

app = typer.Typer(help="Causal scrubbing for TransformerLens models.", no_args_is_help=True, add_completion=False)


@app.callback()
def _main() -> None:
    """Causal scrubbing for TransformerLens models."""


@app.command()
def demo(
    n: int = typer.Option(1000, help="number of examples"),
    seed: int = typer.Option(0, help="sampling seed"),
    n_seeds: int = typer.Option(2, help="seeds to pool"),
) -> None:
    """Score the naive induction hypothesis on the shipped 2-layer attention-only model."""
    from hypotheses.induction import load_model, make_data
    from hypotheses.induction.hypotheses import naive

    import scrub

    warnings.filterwarnings("ignore", message="Moving model")
    model = load_model()
    data = make_data(n, seed=1234)
    h = naive()
    typer.echo(f"model: hypotheses/induction (2-layer attention-only); data: {data}")
    typer.echo(h.describe())
    result = scrub.run(model, h, data, seed=seed, n_seeds=n_seeds)
    lo, hi = result.ci
    typer.echo(f"loss, model:          {result.loss_model:.4f}")
    typer.echo(f"loss, scrubbed:       {result.loss_scrubbed:.4f}")
    typer.echo(f"loss, baseline:       {result.loss_baseline:.4f}  ({result.baseline})")
    typer.echo(f"fraction recovered:   {result.loss_recovered:.1%}  (95% CI {lo:.1%} .. {hi:.1%})")
    typer.echo(f"  {result.ci_method}; plan: {result.plan_size}")


if __name__ == "__main__":
    app()
