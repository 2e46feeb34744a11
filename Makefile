# Two commands matter: `make demo` (upscale the bundled sample with the default model) and `make test`.
# Both set up what they need on a fresh machine: the ffmpeg CLI (for ffprobe, the tests' independent judge),
# a virtualenv with the CPU torch wheel, and vsr itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The versions the tests passed with, as constraints on every install (see the file).
LOCK ?= requirements/lock.txt

.PHONY: install ffmpeg demo demo-image test bench device-wheels lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/cpu.txt requirements/dev.txt $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -r requirements/cpu.txt
	$(BIN)/python -m pip install -q -c $(LOCK) -r requirements/dev.txt
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[cpu-decode,cluster,train,gpu,tools]'
	$(BIN)/python -m pip install -q --no-deps spandrel==0.4.2
	touch $@

ffmpeg:
	@command -v ffprobe >/dev/null || { apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null; }

demo: install
	mkdir -p out
	$(BIN)/vsr upscale samples/bbb_sample.mp4 -o out/bbb_sample.x4.mp4 --overwrite

demo-image: install
	mkdir -p out
	$(BIN)/vsr upscale samples/bbb_frame.png -o out/bbb_frame.x4.png --overwrite

test: install ffmpeg
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

bench: install
	$(BIN)/vsr bench samples/bbb_sample.mp4

# Wheels a lent GPU machine (Python 3.12, no network) lacks, for bench/device_check.py: carry bench/wheels.
device-wheels: install
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  --platform manylinux_2_28_x86_64 --platform manylinux2010_x86_64 --platform any \
	  -d bench/wheels av==18.1.1 decord==0.6.0 ffmpeg-python==0.2.0 future==1.0.0

# A fresh virtualenv with the newest releases the requirements allow, written down as the new lock (then make test).
lock:
	rm -rf $(VENV)
	$(MAKE) install LOCK=/dev/null
	{ grep '^#' requirements/lock.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch=='; } \
	  > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt

clean:
	rm -rf out .pytest_cache
