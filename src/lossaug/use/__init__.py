"""Using a trained run: ``load_trained`` (its model, classes and inputs from the run directory), ``predict`` (new
files), ``evaluate_run`` (new labelled data: error, per-class errors, ``plot_confusion``) and ``export_run`` (a
module file that runs without lossaug: torch.export, TorchScript or ONNX). Files are preprocessed as the run's test
data were (``inputs``).
"""

from lossaug.use.evaluate import Evaluation, evaluate_run, labelled_files, plot_confusion
from lossaug.use.export import EXPORT_FORMAT, ExportedModel, export_run, metadata_path
from lossaug.use.inputs import Unreadable, find_files, read_input, read_inputs
from lossaug.use.predict import Prediction, PredictResult, logits_of, predict
from lossaug.use.run import InputSpec, TrainedRun, load_trained

__all__ = [
    "EXPORT_FORMAT",
    "Evaluation",
    "ExportedModel",
    "InputSpec",
    "PredictResult",
    "Prediction",
    "TrainedRun",
    "Unreadable",
    "evaluate_run",
    "export_run",
    "find_files",
    "labelled_files",
    "load_trained",
    "logits_of",
    "metadata_path",
    "plot_confusion",
    "predict",
    "read_input",
    "read_inputs",
]
