# SPDX-License-Identifier: Apache-2.0
"""cog.exceptions: the exceptions the runner raises inside a prediction (bundled stand-in for Cog's)."""


class CancelationException(Exception):
    """Raised inside predict()/run() when the prediction is canceled (SIGUSR1 for a synchronous predictor)."""


__all__ = ["CancelationException"]
