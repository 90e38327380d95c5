"""Separated objects from class maps, exact across row bands and Dask chunks: :class:`ObjectRule` (which classes are
objects, how touching ones split), labelling per block (:func:`label_objects`), one union-find that joins blocks
(:class:`ObjectMerger`) into an :class:`ObjectTable`, and :class:`ObjectStream` for maps that arrive in bands."""
from .merge import ObjectMerger, ObjectTable
from .separate import ObjectRule, class_region_rule, label_objects, object_rule
from .stream import ObjectStream

__all__ = ["ObjectMerger", "ObjectRule", "ObjectStream", "ObjectTable", "class_region_rule", "label_objects",
           "object_rule"]
