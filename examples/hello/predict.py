# A predictor that greets: it runs unchanged under Cog and under kiln.
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.greeting = "hello"

    def predict(self, name: str = Input(description="who to greet", default="world")) -> str:
        return f"{self.greeting}, {name}!"
