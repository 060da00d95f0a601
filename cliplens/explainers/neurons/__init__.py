"""Second-order effects of MLP neurons (Gandelsman, Efros, Steinhardt, ICLR 2025).

One module per job: :mod:`.effects` (each neuron's effect through the later heads' direct paths),
:mod:`.directions` (one direction per neuron over an image set), :mod:`.describe` (sparse text
descriptions), :mod:`.fitted` (a fit saved and loaded), :mod:`.maps` (neuron-based maps of a text),
:mod:`.ablation` (mean-ablating neurons) and :mod:`.explainer` (the ``neurons`` explainer).
"""

from .describe import describe_neurons
from .effects import SecondOrderLens
from .explainer import NeuronsExplainer
from .fitted import NeuronFit, fit_neurons

__all__ = ["NeuronFit", "NeuronsExplainer", "SecondOrderLens", "describe_neurons", "fit_neurons"]
