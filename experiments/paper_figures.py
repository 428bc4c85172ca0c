"""The figures ``make paper`` runs (``experiments.paper``) and its README
table lists (``experiments.paper_report``), with each one's extra flags."""

# (name, extra flags), in the order they run: Figs. 1 and 2 first (Fig. 2
# reuses Fig. 1's (p, K) runs from the store), then by priority.
FIGURES = (
  ("llc_vs_p", ("--protocol", "both")),
  ("llc_vs_width", ("--protocol", "both")),
  ("llc_over_training", ()),
  # After Figs. 1-3: it reads Figs. 1-2 to check linearity everywhere and
  # studies the Fig. 3 run.
  ("llc_conventions", ()),
  ("gsm_vs_lr", ("--protocol", "both")),
  ("regimes", ("--protocol", "both")),
  ("robustness", ()),
  ("llc_by_layer", ()),
  ("toy_landscapes", ()),
  # Extensions: the paper has no figure of these to compare with. The basin
  # study reads the regimes sweep's runs from the store.
  ("basin_selection", ()),
  ("influence_through_grokking", ()),
  ("architectures", ()),
)
