# A predictor that greets: it runs unchanged under Cog and under kiln.
from cog import BaseRunner, Input


class Predictor(BaseRunner):
    def setup(self) -> None:
        self.greeting = "hello"

    def run(self, name: str = Input(description="who to greet", default="world")) -> str:
        return f"{self.greeting}, {name}!"
