"""A clock tests move by hand: time that passes only when a test says so, and sleeps that are recorded."""

from dataclasses import dataclass, field


@dataclass
class FakeClock:
    """Called, it is the time (epoch seconds); sleep() records what was asked and moves no time."""

    now: float = 100.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
