"""The scan as users run it, judged on labelled records from recorded model scores."""

from cwescan.core.policy import DecisionPolicy
from cwescan.data.records import Record
from cwescan.evaluate.pipeline_view import pipeline_table, pipeline_view

SQLI = "def find(cur, name):\n    cur.execute(\"SELECT * FROM t WHERE n = '\" + input() + \"'\")\n"
SAFE = "def add(a, b):\n    return a + b\n"  # no surface: triage never shows it to a model
# a sink the rules leave alone (a parameter naming the program): the model decides alone
SINK = "import subprocess\n\ndef version(tool):\n    return subprocess.check_output([tool, '--version'])\n"


def test_rules_second_opinion_and_model_only_decide_the_record_verdicts():
    records = [
        Record("v1", "t", SQLI, True), Record("v2", "t", SINK, True),  # a rule sees v1; v2 only the model
        Record("s1", "t", SQLI, False), Record("s2", "t", SINK, False),  # s1: a rule false alarm
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
    records = [Record("v1", "t", SQLI, True), Record("v2", "t", SINK, True)]
    policy = DecisionPolicy(model_only=0.9, safe=0.05, vulnerable=0.5)
    scores = {"v1": 0.95, "v2": 0.95}
    assert pipeline_view(records, scores, policy)["scan"]["tp"] == 2
    gated = pipeline_view(records, scores, policy, gated={"v1", "v2"})
    assert gated["scan"]["tp"] == 1 and gated["model_only_flags"] == 0  # v1's rule finding stays


def test_a_record_triage_clears_gets_no_model_only_finding_whatever_its_score():
    records = [Record("v1", "t", SAFE, True), Record("v2", "t", SINK, True)]
    policy = DecisionPolicy(model_only=0.9, safe=0.05, vulnerable=0.5)
    view = pipeline_view(records, {"v1": 0.99, "v2": 0.99}, policy)
    assert view["scan"]["tp"] == 1 and view["model_only_flags"] == 1  # only v2 reaches the model


def test_a_model_only_finding_under_the_display_confidence_is_not_shown():
    from cwescan.core.policy import Isotonic

    records = [Record("v1", "t", SINK, True), Record("v2", "t", SINK, True)]
    # at the realistic prevalence a score of 0.6 is a 10 % probability: withheld from the
    # default display although it passes the model-only threshold
    policy = DecisionPolicy(model_only=0.5, safe=0.05, vulnerable=0.5, display=0.3,
                            calibration=Isotonic([0.0, 0.5, 0.9], [0.0, 0.1, 0.8]))
    view = pipeline_view(records, {"v1": 0.6, "v2": 0.95}, policy)
    assert view["model_only_flags"] == 1 and view["scan"]["tp"] == 1


# a parameter joined into a path: a rule lead under the display confidence (0.25 < 0.3)
LEAD = "import os\n\ndef read(name):\n    with open(os.path.join('/srv/data', name)) as f:\n        return f.read()\n"


def test_a_lead_under_the_display_gets_the_second_opinion_not_a_model_only_finding():
    records = [Record("v1", "t", LEAD, True), Record("s1", "t", LEAD, False)]
    policy = DecisionPolicy(model_only=0.9, safe=0.05, vulnerable=0.5)
    view = pipeline_view(records, {"v1": 0.95, "s1": 0.6}, policy)
    assert view["static"]["tp"] == 0 and view["static"]["fp"] == 0  # the rules alone show neither
    # the model's confident "vulnerable" raises both leads into view, as a scan's second opinion
    # does; neither is a model-only finding, since a rule found something in the unit
    assert (view["scan"]["tp"], view["scan"]["fp"]) == (1, 1) and view["model_only_flags"] == 0
    below = pipeline_view(records, {"v1": 0.4, "s1": 0.4}, policy)  # an unsure model leaves them hidden
    assert below["scan"]["tp"] == 0 and below["scan"]["fp"] == 0
