"""The scan as users run it, judged on labelled records from recorded model scores."""

from cwescan.core.policy import DecisionPolicy
from cwescan.data.records import Record
from cwescan.evaluate.pipeline_view import pipeline_table, pipeline_view

SQLI = "def find(cur, name):\n    cur.execute(\"SELECT * FROM t WHERE n = '\" + input() + \"'\")\n"
SAFE = "def add(a, b):\n    return a + b\n"


def test_rules_second_opinion_and_model_only_decide_the_record_verdicts():
    records = [
        Record("v1", "t", SQLI, True), Record("v2", "t", SAFE, True),  # a rule sees v1; v2 only the model
        Record("s1", "t", SQLI, False), Record("s2", "t", SAFE, False),  # s1: a rule false alarm
    ]
    policy = DecisionPolicy(model_only=0.9, safe=0.05, vulnerable=0.5)
    scores = {"v1": 0.6, "v2": 0.95, "s1": 0.01, "s2": 0.2}
    view = pipeline_view(records, scores, policy)
    assert (view["static"]["tp"], view["static"]["fp"], view["static"]["fn"]) == (1, 1, 1)
    # the model's confident "safe" hides the rule false alarm; its confident model-only flag finds v2
    assert (view["scan"]["tp"], view["scan"]["fp"], view["scan"]["fn"]) == (2, 0, 0)
    assert view["second_opinion"]["false_positives_hidden"] == 1
    assert view["second_opinion"]["true_positives_hidden"] == 0 and view["model_only_flags"] == 1
    assert "scan (rules + model, its decision policy)" in pipeline_table(view)


def test_a_record_under_the_pair_gate_gets_no_model_only_finding_but_keeps_its_rules():
    records = [Record("v1", "t", SQLI, True), Record("v2", "t", SAFE, True)]
    policy = DecisionPolicy(model_only=0.9, safe=0.05, vulnerable=0.5)
    scores = {"v1": 0.95, "v2": 0.95}
    assert pipeline_view(records, scores, policy)["scan"]["tp"] == 2
    gated = pipeline_view(records, scores, policy, gated={"v1", "v2"})
    assert gated["scan"]["tp"] == 1 and gated["model_only_flags"] == 0  # v1's rule finding stays
