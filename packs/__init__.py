"""Method packs: the field's attribution libraries as ordinary saliency-bench plugins.

Each module registers one library's methods through the ``saliency_bench.methods`` entry-point
group, under a prefixed name, and registers nothing when its library is not installed:

* :mod:`saliency_bench.packs.captum_pack` (``pip install 'saliency-bench[captum]'``):
  ``captum.*``, Captum's attribution algorithms;
* :mod:`saliency_bench.packs.gradcam_pack` (``pip install 'saliency-bench[gradcam]'``):
  ``gradcam.*``, pytorch-grad-cam's CAM family.

Both score the same target as every built-in method (:mod:`saliency_bench.targets`): a row's
class, or the log-sum-exp of a set's logits.
"""
