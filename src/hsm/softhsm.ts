/** Debian's SoftHSM2 module (package softhsm2): the default PKCS#11 module of managed HSMs. */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
