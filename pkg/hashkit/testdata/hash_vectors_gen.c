/*
 * Regenerates hash_vectors.txt from twemproxy's own hash code.
 *
 *   git -C twemproxy checkout 0.5.0
 *   mkdir hk && cp twemproxy/src/hashkit/nc_{crc16,crc32,fnv,hsieh,jenkins,md5,murmur,one_at_a_time}.c hk/
 *   printf '#include <stdint.h>\n#include <stddef.h>\n#include <string.h>\n#define ASSERT(x)\n' > hk/nc_core.h
 *   gcc -O2 -w -Ihk -o hk/gen hash_vectors_gen.c hk/nc_*.c
 *   ./hk/gen < keys.hex   (one hex key per line, empty line = empty key)
 *
 * Build on amd64: plain char is signed there, which several hashes depend on.
 * jenkins is also called at every pointer alignment, since twemproxy picks
 * a code path by alignment; all must agree.
 */
#include "nc_core.h"
#include <stdio.h>
uint32_t hash_one_at_a_time(const char *key, size_t key_length);
void md5_signature(const unsigned char *key, unsigned long length, unsigned char *result);
uint32_t hash_md5(const char *key, size_t key_length);
uint32_t hash_crc16(const char *key, size_t key_length);
uint32_t hash_crc32(const char *key, size_t key_length);
uint32_t hash_crc32a(const char *key, size_t key_length);
uint32_t hash_fnv1_64(const char *key, size_t key_length);
uint32_t hash_fnv1a_64(const char *key, size_t key_length);
uint32_t hash_fnv1_32(const char *key, size_t key_length);
uint32_t hash_fnv1a_32(const char *key, size_t key_length);
uint32_t hash_hsieh(const char *key, size_t key_length);
uint32_t hash_jenkins(const char *key, size_t length);
uint32_t hash_murmur(const char *key, size_t length);
typedef uint32_t (*hf)(const char *, size_t);
static hf fns[] = {hash_one_at_a_time, hash_md5, hash_crc16, hash_crc32, hash_crc32a, hash_fnv1_64, hash_fnv1a_64, hash_fnv1_32, hash_fnv1a_32, hash_hsieh, hash_murmur, hash_jenkins};
static int hexv(int c){ return c<='9'? c-'0' : (c|32)-'a'+10; }
int main(void){
  static char line[100000]; static char buf[50000+16];
  while (fgets(line, sizeof line, stdin)) {
    size_t n = strlen(line); while (n && (line[n-1]=='\n'||line[n-1]=='\r')) line[--n]=0;
    size_t kl = n/2;
    uint32_t j[4];
    for (int off=0; off<4; off++) {
      char *k = buf+off;
      for (size_t i=0;i<kl;i++) k[i]=(char)(hexv(line[2*i])<<4|hexv(line[2*i+1]));
      j[off] = hash_jenkins(k, kl);
      if (off==0) {
        printf("%s", n? line : "-");
        for (int f=0; f<12; f++) printf(" %u", fns[f](k, kl));
        printf("\n");
      }
    }
    if (j[1]!=j[0]||j[2]!=j[0]||j[3]!=j[0]) { fprintf(stderr,"jenkins alignment mismatch %s\n", line); return 1; }
  }
  return 0;
}
