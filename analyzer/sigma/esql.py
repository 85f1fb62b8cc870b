"""pySigma's ES|QL backend, made right for icsmon's multi-valued fields.

ES|QL evaluates a comparison on a field that holds several values as null (and warns): ``event.type
== "error"`` misses an event typed ``["protocol", "error"]``, and ``dnp3.group in (41)`` an event
with objects of groups 12 and 41. ``match(field, value)`` is a term query on keyword and numeric
fields, which sees every value, so equality tests on the schema's array fields
(:attr:`sensor.schema.Field.array`) become ``match`` calls, also inside a value list; and a
comparison holds for some value exactly when it holds for the largest (``gt``, ``gte``: ``mv_max``)
or the smallest (``lt``, ``lte``: ``mv_min``). Wildcards, regular expressions and CIDR tests on array
fields keep the stock expressions and are labelled approximate by ``icsmon rules convert``.

``icsmon rules convert --target esql`` uses this backend; plain ``sigma convert -t esql -p icsmon``
uses the stock one.
"""

from __future__ import annotations

from typing import Any

from sigma.backends.elasticsearch import ESQLBackend
from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionOR
from sigma.conversion.state import ConversionState
from sigma.types import SigmaCompareExpression, SigmaNumber, SigmaString

from sensor.schema import all_fields

__all__ = ["ARRAY_FIELDS", "IcsmonESQLBackend"]

ARRAY_FIELDS = frozenset(f.name for f in all_fields() if f.array)
"""Event fields whose value is a list."""

_Op = SigmaCompareExpression.CompareOperators
_EXTREME = {_Op.GT: "mv_max", _Op.GTE: "mv_max", _Op.LT: "mv_min", _Op.LTE: "mv_min"}


class IcsmonESQLBackend(ESQLBackend):
    name = "ES|QL backend for icsmon events (match() on multi-valued fields)"

    def _match(self, cond: ConditionFieldEqualsValueExpression, state: ConversionState) -> str | None:
        """``match(field, value)`` for a plain value on an array field, else None."""
        if cond.field not in ARRAY_FIELDS:
            return None
        value = cond.value
        if isinstance(value, SigmaString) and not value.contains_special():
            text = self.convert_value_str(value, state)
        elif isinstance(value, SigmaNumber):
            text = str(value)
        else:
            return None
        return f"match({self.escape_and_quote_field(cond.field)}, {text})"

    def convert_condition_field_eq_val_str(self, cond: ConditionFieldEqualsValueExpression,
                                           state: ConversionState) -> Any:
        return self._match(cond, state) or super().convert_condition_field_eq_val_str(cond, state)

    def convert_condition_field_eq_val_num(self, cond: ConditionFieldEqualsValueExpression,
                                           state: ConversionState) -> Any:
        return self._match(cond, state) or super().convert_condition_field_eq_val_num(cond, state)

    def decide_convert_condition_as_in_expression(self, cond: ConditionOR | ConditionAND,
                                                  state: ConversionState) -> bool:
        """No ``field in (...)`` on an array field: each value becomes its own ``match``, ORed."""
        fields = {arg.field for arg in cond.args if isinstance(arg, ConditionFieldEqualsValueExpression)}
        if fields & ARRAY_FIELDS:
            return False
        return bool(super().decide_convert_condition_as_in_expression(cond, state))

    def convert_condition_field_compare_op_val(self, cond: ConditionFieldEqualsValueExpression,
                                               state: ConversionState) -> Any:
        value = cond.value
        if cond.field in ARRAY_FIELDS and isinstance(value, SigmaCompareExpression) \
                and isinstance(value.number, SigmaNumber) and value.op in _EXTREME:
            return (f"{_EXTREME[value.op]}({self.escape_and_quote_field(cond.field)})"
                    f"{self.compare_operators[value.op]}{value.number}")
        return super().convert_condition_field_compare_op_val(cond, state)
