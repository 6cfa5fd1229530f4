"""The mixed-version integration matrix: every mix of legacy and Pydantic services, compared
with the all-legacy baseline, also under faults. See docs/matrix.md."""

from harness.matrix.expectations import LEGACY_OMITS, Expectation, Outcome, expected_outcome
from harness.matrix.faults import Fault, FaultReport
from harness.matrix.inputs import InputExpectation, InputSet, MixedInputs, inputs_expectation
from harness.matrix.isolated import MixRun, Workspace, mix_settings, run_mix
from harness.matrix.mixes import ALL_LEGACY, STRICT_MIXES, Mix, Variant, lenient_mixes, strict_mixes
from harness.matrix.report import report_dict, to_json, to_markdown
from harness.matrix.runner import Case, MatrixConfig, MatrixReport, MatrixRow, plan, run_matrix
from harness.matrix.verdict import COMPARED, Verdict, business_results, judge

__all__ = [
    "ALL_LEGACY",
    "COMPARED",
    "LEGACY_OMITS",
    "STRICT_MIXES",
    "Case",
    "Expectation",
    "Fault",
    "FaultReport",
    "InputExpectation",
    "InputSet",
    "MatrixConfig",
    "MatrixReport",
    "MatrixRow",
    "Mix",
    "MixRun",
    "MixedInputs",
    "Outcome",
    "Variant",
    "Verdict",
    "Workspace",
    "business_results",
    "expected_outcome",
    "inputs_expectation",
    "judge",
    "lenient_mixes",
    "mix_settings",
    "plan",
    "report_dict",
    "run_matrix",
    "run_mix",
    "strict_mixes",
    "to_json",
    "to_markdown",
]
