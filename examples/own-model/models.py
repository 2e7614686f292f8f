"""A model factory for the built-in trainer (`model.factory` in matrices/own-model.yaml).

ftmatrix calls build(num_classes=N, **model.config) in the job process and trains what
it returns like any of its models: normalised images (N, 3, H, W) in, logits out. LoRA
applies through `lora.target_modules` (here the `hidden` layer); the last nn.Linear
(`classifier`) is the head, trained in full."""

from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.hidden = nn.Linear(2 * width, 2 * width)
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.classifier(nn.functional.relu(self.hidden(self.features(x))))


def build(num_classes: int, width: int = 32) -> nn.Module:
    return SmallCNN(num_classes, width)
