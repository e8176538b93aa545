from mammography.report.compare import configuration, group_rows, write_tables


def model(label, seed, lr, kappa):
    return {"label": label, "hyperparameters": {"arch": "resnet50", "seed": seed, "lr": lr},
            "metrics": {"image": {"accuracy": kappa, "kappa": kappa, "macro_f1": kappa,
                                  "auc": None, "balanced_accuracy": kappa}}}


def test_seeds_fold_into_one_configuration_and_differences_are_named(tmp_path):
    assert configuration({"seed": 1, "lr": 0.1})[0] == configuration({"seed": 2, "lr": 0.1})[0]
    rows = group_rows([model("a", 1, 0.1, 0.6), model("b", 2, 0.1, 0.8),
                       model("c", 1, 0.01, 0.5)])
    assert [r["n_runs"] for r in rows] == [2, 1]
    assert rows[0]["description"] == "arch=resnet50, lr=0.1"
    assert abs(rows[0]["kappa_mean"] - 0.7) < 1e-12
    assert abs(rows[0]["kappa_std"] - 0.1414213562) < 1e-9
    assert rows[0]["auc_mean"] is None and rows[1]["kappa_std"] == 0.0
    csv_path, md_path, tex_path = write_tables(rows, tmp_path)
    md = md_path.read_text()
    assert "| arch=resnet50, lr=0.1 | 2 | 0.700 ± 0.141 | 0.700 ± 0.141 |" in md
    assert "n/a" in md
    tex = tex_path.read_text()
    assert "0.700 $\\pm$ 0.141" in tex and "\\toprule" in tex and "lr=0.01" in tex
    assert csv_path.read_text().startswith("configuration,description,n_runs")
