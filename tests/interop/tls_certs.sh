#!/usr/bin/env bash
# Makes the certificates of the TLS tests in DIR with openssl, fresh each run:
#   ca.crt ca.key            the test CA
#   other-ca.crt             an unrelated CA (the "wrong CA")
#   server.crt server.key    CN localhost, SAN DNS:localhost IP:127.0.0.1-4, from ca
#   expired.crt              the same key and names, valid only in 2020
#   wronghost.crt            the same key, for wrong.example only
#   client.crt client.key    CN tern-client, O Tern Tests, from ca
#   revoked.crt revoked.key  CN tern-revoked, from ca, revoked in crl.pem
#   other-client.crt/.key    CN tern-other, from other-ca
#
# usage: tls_certs.sh DIR
set -euo pipefail
dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
cd "$dir"

openssl_q() { openssl "$@" 2>/dev/null; }

make_ca() {  # NAME CN
    openssl_q req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" -days 30 \
        -subj "/CN=$2" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign
    mkdir -p "$1.db"
    : >"$1.db/index.txt"
    echo 1000 >"$1.db/serial"
    echo 1000 >"$1.db/crlnumber"
    cat >"$1.cnf" <<CNF
[ca]
default_ca = this
[this]
dir = $PWD/$1.db
database = \$dir/index.txt
serial = \$dir/serial
crlnumber = \$dir/crlnumber
new_certs_dir = \$dir
certificate = $PWD/$1.crt
private_key = $PWD/$1.key
default_md = sha256
default_crl_days = 30
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
organizationName = optional
CNF
}

# sign CA NAME SUBJECT SAN KEY [openssl ca date options...]
sign() {
    local ca=$1 name=$2 subj=$3 san=$4 key=$5
    shift 5
    local ext=()
    [[ -n $san ]] && ext=(-addext "subjectAltName=$san")
    openssl_q req -new -key "$key" -out "$name.csr" -subj "$subj" "${ext[@]}"
    openssl_q ca -batch -config "$ca.cnf" -in "$name.csr" -out "$name.crt" -notext "$@"
}

newkey() { openssl_q genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

make_ca ca "Tern Test CA"
make_ca other-ca "Tern Other CA"
newkey server.key
newkey client.key
newkey revoked.key
newkey other-client.key
sign ca server "/CN=localhost" "DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:127.0.0.4" server.key -days 30
sign ca expired "/CN=localhost" "DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:127.0.0.4" server.key \
    -startdate 20200101000000Z -enddate 20200201000000Z
sign ca wronghost "/CN=wrong.example" "DNS:wrong.example" server.key -days 30
sign ca client "/O=Tern Tests/CN=tern-client" "" client.key -days 30
sign ca revoked "/CN=tern-revoked" "" revoked.key -days 30
sign other-ca other-client "/CN=tern-other" "" other-client.key -days 30
openssl_q ca -config ca.cnf -revoke revoked.crt
openssl_q ca -config ca.cnf -gencrl -out crl.pem
rm -f ./*.csr
