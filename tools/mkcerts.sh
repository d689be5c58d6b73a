#!/bin/sh
# A throwaway CA and node certificates for tests and the demo. Not for
# production: keys are unencrypted and certificates last one day.
#
#   tools/mkcerts.sh DIR NAME...
#
# makes DIR/ca.pem and DIR/ca.key (kept if they exist: more nodes can be
# added later), and for each NAME a directory DIR/NAME/ with ca.pem (a copy),
# cert.pem and key.pem: EC P-256, CN=NAME, SAN DNS:NAME, DNS:localhost,
# IP:127.0.0.1, usable as TLS server and client. That is the layout
# xport_tls_from_dir() reads.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 DIR NAME..." >&2
	exit 2
fi
command -v openssl >/dev/null 2>&1 || {
	echo "$0: openssl not found: apt-get install openssl" >&2
	exit 1
}

dir=$1
shift
umask 077
mkdir -p "$dir"

if [ ! -f "$dir/ca.pem" ] || [ ! -f "$dir/ca.key" ]; then
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 1 \
		-subj "/CN=Ferry test CA $(basename "$dir")" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

for name in "$@"; do
	case $name in
	''|*[!A-Za-z0-9._-]*)
		echo "$0: bad node name '$name' (letters, digits, . _ -)" >&2
		exit 2 ;;
	esac
	d=$dir/$name
	mkdir -p "$d"
	ext=$d/ext.cnf
	cat >"$ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:$name, DNS:localhost, IP:127.0.0.1
EOF
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$d/key.pem" -subj "/CN=$name" 2>/dev/null |
	openssl x509 -req -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
		-set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" \
		-days 1 -extfile "$ext" -out "$d/cert.pem" 2>/dev/null
	rm -f "$ext"
	cp "$dir/ca.pem" "$d/ca.pem"
	chmod 644 "$d/ca.pem" "$d/cert.pem" "$dir/ca.pem"
done
