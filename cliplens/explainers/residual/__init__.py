"""The residual-decomposition family (Gandelsman et al., ICLR 2024): the image embedding decomposed into layers x
heads x tokens (:mod:`.decomposition`), TextSpan's text descriptions of heads (:mod:`.textspan`), and mean-ablation of
MLPs, attention layers and heads (:mod:`.ablation`)."""
