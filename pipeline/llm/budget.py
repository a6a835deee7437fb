"""A token budget shared by every worker process of a build on one machine.

A ledger file holds the tokens used so far; a worker reserves a request's worst case (prompt estimate +
max_tokens) under an exclusive file lock before sending, and settles the actual usage afterwards. Once
a reservation would pass the limit, no more requests go out and the rest of the build keeps its
template text: the run stops spending cleanly instead of failing half-way. (On a multi-machine
runner each machine gets its own ledger; set the budget per machine.)
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path


class TokenBudget:
    def __init__(self, ledger: str | Path, limit: int | None) -> None:
        self.ledger = Path(ledger)
        self.limit = limit

    @contextmanager
    def _locked(self):
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        with open(self.ledger, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.seek(0)
                text = f.read()
                state = json.loads(text) if text.strip() else {"used": 0, "exhausted": False}
                yield state
                f.seek(0)
                f.truncate()
                f.write(json.dumps(state))
                f.flush()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def reserve(self, tokens: int) -> bool:
        """Claim `tokens` if the budget allows it; False (and the budget marked exhausted) otherwise."""
        if self.limit is None:
            return True
        with self._locked() as state:
            if state["used"] + tokens > self.limit:
                state["exhausted"] = True
                return False
            state["used"] += tokens
            return True

    def settle(self, reserved: int, actual: int) -> None:
        """Replace a reservation by the tokens the response actually used."""
        if self.limit is None:
            return
        with self._locked() as state:
            state["used"] += actual - reserved

    def state(self) -> dict:
        if not self.ledger.exists():
            return {"used": 0, "exhausted": False, "limit": self.limit}
        return {**json.loads(self.ledger.read_text() or "{}"), "limit": self.limit}
