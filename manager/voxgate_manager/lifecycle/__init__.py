"""One model's lifecycle: the pure state machine (``machine``), the controller that runs its effects
against a runtime (``controller``), and what the controller asks a running server: is it still
answering (``liveness``), park and wake (``parking``). ``DESIGN.md`` beside them writes the states,
transitions and races down; it changes with every new state."""
