"""The built-in benchmarks (scoring protocols), one module per family, each registered through
the ``saliency_bench.benchmarks`` entry point:

* :mod:`.pointing` — the pointing game (docs/PROTOCOLS.md §2);
* :mod:`.localization` — weak localization and MaxBoxAccV2 (§3);
* :mod:`.runtime` — images/s, ms/image and passes per image from the run's own timed calls (§4);
* :mod:`.parts` — the part-saliency test (§7);
* :mod:`.faithfulness` — the deletion game, RISE's deletion and insertion (§10): these run the
  model on perturbed inputs through a :class:`~saliency_bench.contracts.Probe`.

Pointing, localization and parts are functions of (maps, ground truth) alone; :mod:`.stats`
gives every score its bootstrap interval (§12).
"""
