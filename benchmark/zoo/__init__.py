"""Model zoo: backbones, heads, training recipes, and the cached zoo of a suite."""

from benchmark.zoo.model import ClassificationHead, ImageClassifier, accuracy, dataset_accuracy, predict
from benchmark.zoo.zoo import Zoo, build_zoo, zoo_report

__all__ = ["ClassificationHead", "ImageClassifier", "Zoo", "accuracy", "build_zoo", "dataset_accuracy", "predict",
           "zoo_report"]
