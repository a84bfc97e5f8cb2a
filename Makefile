# The two set-up commands for a fresh machine (see README): `make demo` and `make test`.
# Each creates .venv itself and installs what it needs; nothing but Python must be pre-installed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ORCH := $(VENV)/bin/orch
REAL_VENV := .venv-real
REAL_REQUIREMENTS := examples/gpt2_deepspeed/requirements.txt

.PHONY: install real-stack demo demo-real demo-cpt test test-unit slurm-up slurm-down browser test-tools bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The real training stack for examples/gpt2_deepspeed and its tests, in a venv of its own (about 1.9 GB, 80 s
# here): torch (CPU), DeepSpeed, megatron-core, transformers, lm-evaluation-harness. torch goes in first: DeepSpeed
# builds against the installed torch.
real-stack: $(REAL_VENV)/.installed

$(REAL_VENV)/.installed: $(REAL_REQUIREMENTS)
	$(PYTHON) -m venv $(REAL_VENV)
	$(REAL_VENV)/bin/python -m pip install -q --upgrade pip
	$(REAL_VENV)/bin/python -m pip install -q $$(grep '^torch==' $(REAL_REQUIREMENTS))
	$(REAL_VENV)/bin/python -m pip install -q -r $(REAL_REQUIREMENTS)
	touch $@

# The quickstart campaign on the local scheduler: 96 real jobs (tinylm pretrain, cooldown branches,
# convert+eval of every checkpoint), then the collected results, the scaling law fitted to the run ends
# (its E beside the grammar's true entropy) and the campaign report. Re-running resumes: done jobs stay done.
demo: install
	$(ORCH) build-and-run configs/quickstart.yaml --scheduler local --max-jobs 4 --poll-secs 2
	$(ORCH) results configs/quickstart.yaml --params EXP,PHASE_TAG --plot runs/quickstart/val_loss.png
	$(ORCH) fit configs/quickstart.yaml --irreducible $$($(PY) examples/tinylm/grammar.py --entropy) \
		--budget 1e11 --budget 1e12 --plot runs/quickstart/fit.png
	$(ORCH) report configs/quickstart.yaml -o runs/quickstart/report.html \
		--irreducible $$($(PY) examples/tinylm/grammar.py --entropy)

# The campaign on the real stack (configs/gpt2_deepspeed.yaml, 18 jobs): GPT-2 + DeepSpeed ZeRO-1 on 2 CPU ranks,
# cooldown branches, DeepSpeed's zero_to_fp32 + save_pretrained and lm-eval on every whole save; then the results.
demo-real: install real-stack
	$(ORCH) build-and-run configs/gpt2_deepspeed.yaml --scheduler local --max-jobs 4 --poll-secs 2
	$(ORCH) results configs/gpt2_deepspeed.yaml --params EXP,PHASE_TAG --plot runs/gpt2_deepspeed/val_loss.png

# Continual pre-training on tinylm (docs/cpt.md): pretrain + 3 stages x 4 mixes, every checkpoint evaluated on
# every dataset; the table and the forgetting / learning plot.
demo-cpt: install
	$(ORCH) build-and-run configs/cpt_quickstart.yaml --scheduler local --max-jobs 4 --poll-secs 2
	$(ORCH) results configs/cpt_quickstart.yaml --params RUN --size-key MIX \
		--plot-columns eval/loss_d0,eval/loss_new --plot runs/cpt_quickstart/forgetting.png

slurm-up:
	bash scripts/slurm-test-cluster.sh start

slurm-down:
	bash scripts/slurm-test-cluster.sh stop

browser:
	bash scripts/install-test-browser.sh

test-tools:
	bash scripts/install-test-tools.sh

test: install real-stack slurm-up browser test-tools
	$(PY) -m pytest -q -p no:cacheprovider

test-unit: install
	$(PY) -m pytest -q -p no:cacheprovider -m 'not slurm'

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(REAL_VENV) .pytest_cache build *.egg-info
