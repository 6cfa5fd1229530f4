"""The mixed-version integration matrix: every mix of legacy and Pydantic services, compared
with the all-legacy baseline, also under faults. See docs/matrix.md."""

from services.matrix.expectations import LEGACY_OMITS, Expectation, Outcome, expected_outcome
from services.matrix.faults import Fault, FaultReport
from services.matrix.inputs import InputExpectation, InputSet, MixedInputs, inputs_expectation
from services.matrix.isolated import MixRun, Workspace, mix_settings, run_mix
from services.matrix.mixes import ALL_LEGACY, STRICT_MIXES, Mix, Variant, lenient_mixes, strict_mixes
from services.matrix.report import report_dict, to_json, to_markdown
from services.matrix.runner import Case, MatrixConfig, MatrixReport, MatrixRow, plan, run_matrix
from services.matrix.verdict import COMPARED, Verdict, business_results, judge

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
