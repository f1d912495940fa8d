# In the repository's root: the binary, and a new, empty scratch directory with the demo's VM
# configuration (to walk through again, first stop the servers and rm -r /tmp/vmledger-run).
mkdir /tmp/vmledger-run
go build -o /tmp/vmledger-run/vmledger ./cmd/vmledger
cp cmd/vmledger/demodata/web01.json /tmp/vmledger-run/     # the VM the customer ordered
cd /tmp/vmledger-run && export PATH=$PWD:$PATH

# Keys: one for the log, one per witness (Ed25519 note keys; files are 0600 and refused otherwise).
vmledger keygen --name log.example/vmledger --out log.key --vkey log.vkey   # and the verifier key
for w in w1 w2 w3; do vmledger keygen --name $w.example --out $w.key --vkey $w.vkey; done

# Witnesses: each witnesses the logs listed in a tlog-policy "log" file.
echo "log $(cat log.vkey) http://127.0.0.1:8080" > logs.txt
vmledger witness serve --data w1 --listen 127.0.0.1:7001 --key w1.key --logs logs.txt &
vmledger witness serve --data w2 --listen 127.0.0.1:7002 --key w2.key --logs logs.txt &
vmledger witness serve --data w3 --listen 127.0.0.1:7003 --key w3.key --logs logs.txt &

# The log publishes a checkpoint only once 2 of the 3 witnesses cosigned it.
cat > witnesses.txt <<EOF
witness w1 $(cat w1.vkey) http://127.0.0.1:7001
witness w2 $(cat w2.vkey) http://127.0.0.1:7002
witness w3 $(cat w3.vkey) http://127.0.0.1:7003
group two-of-three 2 w1 w2 w3
quorum two-of-three
EOF
head -c 32 /dev/urandom | base64 > admin.token && chmod 600 admin.token
vmledger log serve --data logdata --listen 127.0.0.1:8080 --key log.key \
    --witness-policy witnesses.txt --admin-token-file admin.token &
until curl -sf http://127.0.0.1:8080/checkpoint > /dev/null; do sleep 0.2; done   # cosigned and serving

# The host's TPM (here swtpm), provisioned and enrolled with the log.
mkdir -p tpm
swtpm socket --tpm2 --tpmstate dir=tpm --server type=tcp,port=2321,bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=2322,bindaddr=127.0.0.1 --flags not-need-init,startup-clear &
sleep 1   # swtpm listening
vmledger coproc init --coproc swtpm:127.0.0.1:2321
vmledger coproc info --coproc swtpm:127.0.0.1:2321 | sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' > host-a.pem
vmledger log enroll --log http://127.0.0.1:8080 --admin-token-file admin.token --key host-a.pem --name host-a

# The customer's trust file: the log, the witness policy, the co-processor keys.
{ echo "log $(cat log.vkey) http://127.0.0.1:8080"; cat witnesses.txt; echo "coprocessor host-a host-a.pem"; } > trust.txt

# The agent: measure, attest, log, wait for the cosigned checkpoint, verify, then exec the VM
# (here /bin/echo stands in for qemu-system-x86_64 -name web01 …).
head -c 32 /dev/urandom > web01.secret && chmod 600 web01.secret     # shared with the VM's owner
vmledger agent launch --vm web01 --config web01.json --vm-secret web01.secret \
    --coproc swtpm:127.0.0.1:2321 --log http://127.0.0.1:8080 --trust trust.txt \
    --out web01.bundle.json -- /bin/echo qemu-system-x86_64 -name web01

# The customer, offline, with the configuration they ordered and the VM secret.
vmledger verify --bundle web01.bundle.json --trust trust.txt --expected web01.json --vm-secret web01.secret --vm web01

# The customer's monitor: follows the log and alerts on any other attestation of web01.
echo '{"vms": [{"vm": "web01", "config": "web01.json", "vm_secret": "web01.secret"}]}' > watch.json
vmledger monitor --log http://127.0.0.1:8080 --trust trust.txt --watch watch.json --once

kill $(jobs -p)   # stop the witnesses, the log and swtpm
