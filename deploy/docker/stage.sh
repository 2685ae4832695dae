#!/bin/sh
# The steps of the image recipe, shared by deploy/docker/Dockerfile and by the test that
# installs each service "as the image does" (tests/deploy/test_image_install.py), so the two
# cannot drift apart. Run from the repository root.
#
#   stage.sh venv DEST [LOCK]       a virtualenv with LOCK, hash-checked (default
#                                   requirements.lock, the runtime set every service shares)
#   stage.sh gen PYTHON DEST        generated protobuf/gRPC modules (PYTHON has grpcio-tools)
#   stage.sh app SERVICE DEST       runtime/ and services/SERVICE/, without tests or caches
#   stage.sh emulators DEST         the emulators (dev overlay only)
set -eu

command="$1"
shift

copy_tree() {
	# copy_tree SOURCE DEST: the package without tests, caches and stray files.
	mkdir -p "$2"
	(cd "$1" && find . -type d \( -name tests -o -name __pycache__ \) -prune -o -type f \
		! -name '*.pyc' -print) | while IFS= read -r file; do
		mkdir -p "$2/$(dirname "$file")"
		cp "$1/$file" "$2/$file"
	done
}

case "$command" in
venv)
	python -m venv "$1"
	"$1/bin/pip" install --no-cache-dir --disable-pip-version-check -q --require-hashes \
		-r "${2:-requirements.lock}"
	;;
gen)
	mkdir -p "$2"
	# shellcheck disable=SC2046 # one argument per proto file is intended
	"$1" -m grpc_tools.protoc -Iprotos --python_out="$2" --grpc_python_out="$2" \
		$(find protos -name '*.proto' | sort)
	find "$2/askvault" -type d -exec touch {}/__init__.py \;
	;;
app)
	test -f "services/$1/__main__.py" || { echo "no service $1" >&2; exit 1; }
	copy_tree runtime "$2/runtime"
	copy_tree "services/$1" "$2/services/$1"
	;;
emulators)
	for emulator in stripe_emulator smtp_sink whatsapp_emulator; do
		copy_tree "emulators/$emulator" "$1/emulators/$emulator"
	done
	;;
*)
	echo "unknown step $command" >&2
	exit 2
	;;
esac
